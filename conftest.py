"""Fixtures shared by every app's tests: a customer, a second customer (each with their personal
organization), a staff user."""

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from accounts.models import User
from billing.models import EndpointLimit, Plan
from billing.plans import seed_plans
from tests.helpers import PASSWORD
from usage import forward_auth

# localstripe and the fake Stripe in front of it, for the billing and browser tests.
pytest_plugins = ["billing.tests.stripe_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def stop_background_threads(django_db_setup, django_db_blocker):
    """Tests that reach the process-wide forward-auth service (the live server) start its threads;
    stop them, and close their connections, before the test database is dropped."""
    yield
    with django_db_blocker.unblock():
        forward_auth.stop_service()


@pytest.fixture(scope="session", autouse=True)
def fresh_redis():
    """Rate-limit counters are keyed by account id, and every run's test database reuses the same ids:
    an earlier run's counters (in Redis for up to a day) must not count against this run's customers."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # a missing Redis fails here: never a silent skip


@pytest.fixture(autouse=True)
def seeded_plans(request):
    """A transactional test's flush empties every table, the plans the migration seeded
    included: the tests after it get them back, as every database has them."""
    marker = request.node.get_closest_marker("django_db")
    if (marker and marker.kwargs.get("transaction")) or {"transactional_db", "live_server"} & set(request.fixturenames):
        request.getfixturevalue("transactional_db")
        seed_plans(Plan, EndpointLimit)


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()  # login throttling counts live here


@pytest.fixture
def usage_store(db):
    """Empty usage tables before and after: they are unmanaged, so transactional tests' flushes skip them."""

    def empty():
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE api_calls, api_calls_hourly, api_calls_daily")

    empty()
    yield
    empty()


@pytest.fixture
def customer(db) -> User:
    """A customer as sign-up makes one: a user, owner of their personal organization."""
    return User.objects.create_user("ada@example.com", PASSWORD)


@pytest.fixture
def other_customer(db) -> User:
    return User.objects.create_user("grace@example.com", PASSWORD)


@pytest.fixture
def staff_user(db) -> User:
    return User.objects.create_superuser("staff@example.com", PASSWORD)


@pytest.fixture
def customer_client(client, customer):
    client.force_login(customer)
    return client


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client
