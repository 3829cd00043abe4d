import pytest
from django.conf import settings

from accounts.models import ApiToken
from billing.models import Customer, EndpointLimit, Plan
from usage.forward_auth import ForwardAuth
from usage.limiter import MemoryCounters, RedisCounters
from usage.recorder import UsageRecorder
from usage.tests.helpers import FakeClock


@pytest.fixture(params=["memory", "redis"])
def counters(request):
    """The same behavioural tests run against both counter backends."""
    if request.param == "memory":
        return MemoryCounters()
    backend = RedisCounters(settings.REDIS_URL)
    backend._redis.flushdb()  # a missing Redis fails here: never a silent skip
    return backend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> UsageRecorder:
    return UsageRecorder()


@pytest.fixture
def auth(counters, clock, recorder) -> ForwardAuth:
    """A forward-auth service on the test database; call `auth.refresh()` after changing data."""
    return ForwardAuth(counters, fail_open=False, refresh_seconds=0, lease_ttl=30, recorder=recorder, clock=clock)


@pytest.fixture
def plan(db) -> Plan:
    plan = Plan.objects.create(
        name="Tiny", slug="tiny", per_minute=3, per_hour=5, per_day=None, per_month=None, concurrency=None
    )
    EndpointLimit.objects.create(plan=plan, pattern="/v1/*/summarization", window="minute", quota=2)
    return plan


@pytest.fixture
def secret(customer, plan) -> str:
    """A token the customer created in their organization, which is on the Tiny plan."""
    Customer.objects.create(organization=customer.default_organization(), plan=plan)
    return ApiToken.issue(customer.default_organization(), "test", created_by=customer)[1]
