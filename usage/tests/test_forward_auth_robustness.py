"""No input a client can send gets a 5xx; changes arrive within seconds; outages follow the setting."""

import json
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import ApiToken
from billing.models import Customer, Plan
from tests.servers import wait_for
from usage import forward_auth
from usage.forward_auth import ForwardAuth
from usage.limiter import MemoryCounters, RedisCounters
from usage.recorder import UsageRecorder
from usage.tests.helpers import call

NASTY_HEADERS = [
    {},
    {"HTTP_AUTHORIZATION": "Bearer " + "A" * 100_000},
    {"HTTP_AUTHORIZATION": "Bearer nlp_ünïcødé_" + "é" * 43},
    {"HTTP_AUTHORIZATION": "Bearer nlp_abcdefgh_" + "\u20ac" * 43},
    {"HTTP_AUTHORIZATION": "Bearer a, Bearer b"},
    {"HTTP_AUTHORIZATION": "Bearer\tnlp_abcdefgh_" + "x" * 43},
    {"HTTP_AUTHORIZATION": "\x00\x01\x02"},
    {"HTTP_AUTHORIZATION": " "},
    {"HTTP_X_FORWARDED_URI": "/" + "v" * 100_000, "HTTP_X_FORWARDED_METHOD": "X" * 5000},
    {"HTTP_X_FORWARDED_URI": "\u2603/\x00?%%%", "HTTP_X_FORWARDED_FOR": "not-an-ip, ::1, 999.1.1.1"},
]


@pytest.fixture
def django_service(monkeypatch, db):
    """The process-wide service the Django view and the lean entry point use, fresh per test."""
    service = ForwardAuth(MemoryCounters(), fail_open=False, refresh_seconds=0, lease_ttl=30, recorder=UsageRecorder())
    monkeypatch.setattr(forward_auth, "_service", service)
    return service


@pytest.mark.parametrize("headers", NASTY_HEADERS)
def test_the_django_view_never_answers_5xx_to_nasty_headers(client, django_service, headers):
    response = client.get("/forward-auth", **headers)
    assert response.status_code == 401
    assert json.loads(response.content)["status"] == 401


@pytest.mark.parametrize("headers", NASTY_HEADERS)
def test_nasty_headers_with_a_valid_token_still_get_a_clean_answer(auth, secret, headers):
    auth.refresh()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}", **headers}
    assert auth.answer(headers).status in (200, 401)


def test_the_django_view_and_the_lean_entry_point_give_the_same_answer(client, django_service, customer):
    from backoffice.wsgi import application

    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    django_service.refresh()
    response = client.get("/forward-auth", HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_X_FORWARDED_URI="/v1/x/y")
    captured = {}
    environ = {"PATH_INFO": "/forward-auth", "REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"Bearer {secret}"}
    body = application(environ, lambda status, headers: captured.update(status=status, headers=dict(headers)))
    assert response.status_code == 200 and captured["status"] == "200 OK" and body == [b""]
    for name in ["X-Organization-Id", "X-Plan", "X-Token-Id"]:
        assert response[name] == captured["headers"][name]


def test_the_lean_entry_point_leaves_other_paths_to_django(django_service):
    from backoffice.wsgi import application

    captured = {}
    environ = Client().get("/login/").wsgi_request.environ  # a complete environ
    b"".join(application(environ, lambda status, headers: captured.update(status=status)))
    assert captured["status"] == "200 OK"


@pytest.mark.django_db(transaction=True)
def test_revocation_and_plan_changes_reach_a_running_process_within_five_seconds(customer):
    service = ForwardAuth(
        MemoryCounters(), fail_open=False, refresh_seconds=0.2, lease_ttl=30, recorder=UsageRecorder()
    )
    plan = Plan.objects.create(name="Flex", slug="flex")  # no limits: every call passes
    Customer.objects.create(organization=customer.default_organization(), plan=plan)
    token, secret = ApiToken.issue(customer.default_organization(), "t")
    service.start()
    try:
        assert dict(call(service, secret).headers)["X-Plan"] == "flex"

        Plan.objects.filter(pk=plan.pk).update(slug="flex-2027")
        assert wait_for(lambda: dict(call(service, secret).headers).get("X-Plan") == "flex-2027", seconds=5)

        new_secret = ApiToken.issue(customer.default_organization(), "new")[1]
        assert wait_for(lambda: call(service, new_secret).status == 200, seconds=5)

        ApiToken.objects.filter(pk=token.pk).update(revoked_at="2027-01-01T00:00Z")  # a bulk update, as in admin
        assert wait_for(lambda: call(service, secret).status == 401, seconds=5)
    finally:
        service.stop()


@pytest.mark.parametrize("fail_open, status", [(False, 503), (True, 200)])
def test_when_redis_is_down_the_setting_decides(auth, secret, fail_open, status):
    down = ForwardAuth(RedisCounters("redis://127.0.0.1:1/0"), fail_open=fail_open, refresh_seconds=0, lease_ttl=30)
    down.refresh()
    answer = call(down, secret)
    assert answer.status == status
    if fail_open:
        assert dict(answer.headers)["X-RateLimit-Unchecked"] == "1"
        assert dict(answer.headers)["X-Plan"] == "tiny"  # still authenticated
    else:
        assert dict(answer.headers)["Retry-After"] == "5"


def test_a_redis_outage_is_logged_once_a_second_not_once_a_call(auth, secret, caplog):
    down = ForwardAuth(RedisCounters("redis://127.0.0.1:1/0"), fail_open=True, refresh_seconds=0, lease_ttl=30)
    down.refresh()
    with caplog.at_level("ERROR", logger="usage.forward_auth"):
        statuses = {call(down, secret).status for _ in range(50)}
    assert statuses == {200}
    assert [record.message for record in caplog.records] == ["Forward-auth: rate-limit counters unavailable"]


@pytest.mark.parametrize("fail_open, status", [("0", 503), ("1", 200)])
def test_when_postgresql_is_down_at_start_the_setting_decides(fail_open, status):
    script = (
        "import django; django.setup();"
        "from usage.forward_auth import service;"
        "print(service().answer({'HTTP_AUTHORIZATION': 'Bearer x'}).status)"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "1",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing",
        "FORWARD_AUTH_FAIL_OPEN": fail_open,
        "FORWARD_AUTH_REFRESH_SECONDS": "0",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(status)
    # Nothing to write at exit: the usage flusher does not wait for the database (20 s, two pool timeouts).
    assert time.monotonic() - started < settings.DATABASE_POOL_TIMEOUT


@pytest.mark.parametrize("lease", ["\xb2.x", "", ".", "x" * 500, "12.", "-1.abc"])
def test_releasing_a_malformed_lease_is_a_404_not_a_crash(client, django_service, lease):
    response = client.post("/forward-auth/release", HTTP_X_LEASE_ID=lease)
    assert response.status_code == 404 and json.loads(response.content)["status"] == 404
