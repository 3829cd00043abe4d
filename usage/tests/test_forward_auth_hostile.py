"""Forward-auth under hostile input and load: storable events, a busy Redis, several processes, a killed worker."""

import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError

from accounts.models import ApiToken
from billing.models import Customer, Plan
from tests.servers import backoffice, backoffice_env, children, free_port, wait_for
from usage import forward_auth
from usage.forward_auth import ForwardAuth
from usage.limiter import MemoryCounters, RedisCounters
from usage.models import ApiCall
from usage.recorder import UsageRecorder
from usage.tests.helpers import call


@pytest.mark.parametrize(
    "uri, method",
    [
        ("/v1/en/entities%00", "POST"),
        ("/v1/%00/x%00%00?q=%00", "POST"),
        ("/v1/\x00raw", "PO\x00ST"),
        ("/v1/%ff%fe%c3", "GET"),
        ("/v1/" + "%F0%9F%98%80" * 500, "X" * 5000),
    ],
)
def test_hostile_paths_and_methods_are_recorded_storably_beside_everyone_elses_calls(
    auth, secret, tmp_path, usage_store, uri, method
):
    recorder = auth.recorder = UsageRecorder(journal_dir=tmp_path)
    auth.refresh()
    assert call(auth, secret, uri=uri, HTTP_X_FORWARDED_METHOD=method).status == 200
    assert call(auth, secret, uri="/v1/en/entities").status == 200  # another call, after the hostile one
    assert recorder.flush()
    stored = list(ApiCall.objects.values_list("endpoint", "method"))
    assert len(stored) == 2
    assert all("\x00" not in text and len(text) <= 200 for row in stored for text in row)


@pytest.mark.parametrize("fail_open", [False, True])
def test_calls_let_through_while_redis_is_down_are_recorded_as_unchecked(secret, fail_open):
    recorder = UsageRecorder()
    down = ForwardAuth(
        RedisCounters("redis://127.0.0.1:1/0"), fail_open=fail_open, refresh_seconds=0, lease_ttl=30, recorder=recorder
    )
    down.refresh()
    answers = [call(down, secret) for _ in range(20)]
    events = recorder.drain()
    if not fail_open:
        assert {answer.status for answer in answers} == {503} and events == []
        return
    assert {answer.status for answer in answers} == {200}
    assert [event[6] for event in events] == [dict(answer.headers)["X-Request-Id"] for answer in answers]
    assert all(event[5] == 200 and event[7] is True for event in events)  # status, unchecked


def test_a_token_that_cannot_be_looked_up_is_never_let_through_even_failing_open(secret, monkeypatch):
    """Failing open is for counters that are down; an unverifiable token would let any made-up one pass."""
    auth = ForwardAuth(MemoryCounters(), fail_open=True, refresh_seconds=0, lease_ttl=30, recorder=UsageRecorder())
    auth.refresh()

    def database_down(prefix):
        raise OperationalError("connection refused")

    monkeypatch.setattr(forward_auth, "load_credential", database_down)
    answer = call(auth, "nlp_madeup00_" + "x" * 43)
    assert answer.status == 503 and ("X-Auth-Unverified", "1") not in answer.headers


def test_500_concurrent_decisions_on_a_healthy_redis_allow_exactly_the_quota(customer):
    """A burst larger than the connection pool waits for connections: busy is not down."""
    Customer.objects.create(
        organization=customer.default_organization(),
        plan=Plan.objects.create(name="Burst", slug="burst", per_minute=50),
    )
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    auth = ForwardAuth.from_settings()  # the configured backend: Redis, as REDIS_URL is set
    assert isinstance(auth.counters, RedisCounters)
    auth.refresh()
    assert call(auth, secret).status == 200  # the token is looked up once, here, where the test's data is visible
    for burst in range(3):
        auth.counters._redis.flushdb()
        start = threading.Barrier(500)

        def decide(_):
            start.wait()
            return call(auth, secret).status

        with ThreadPoolExecutor(500) as pool:
            assert Counter(pool.map(decide, range(500))) == {200: 50, 429: 450}, f"burst {burst}"


def test_counters_are_in_redis_whenever_redis_is_configured():
    script = "import django; django.setup(); from django.conf import settings; print(settings.FORWARD_AUTH_BACKEND)"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "1",
        "DATABASE_URL": os.environ["DATABASE_URL"],
    }
    for redis_url, backend in [(settings.REDIS_URL, "redis"), ("", "memory")]:
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=env | {"REDIS_URL": redis_url},
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
        )
        assert result.stdout.strip() == backend, result.stderr


# Server processes: transactional (pytest-django runs these after the others).


@pytest.mark.django_db(transaction=True)
def test_memory_counters_in_several_worker_processes_refuse_to_start():
    env = backoffice_env(
        HOST="127.0.0.1", PORT=str(free_port()), WEB_WORKERS="2", REDIS_URL="", FORWARD_AUTH_BACKEND="memory"
    )
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        ["deploy/serve"], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "FORWARD_AUTH_BACKEND=memory counts in one process" in result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_the_production_server_survives_a_killed_worker(customer):
    Customer.objects.create(
        organization=customer.default_organization(), plan=Plan.objects.create(name="Open", slug="open")
    )
    secret = ApiToken.issue(customer.default_organization(), "t")[1]
    port = free_port()

    def status() -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/forward-auth", headers={"Authorization": f"Bearer {secret}"}
        )
        try:
            return urllib.request.urlopen(request, timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code

    with backoffice(port, workers=2) as server:
        started = lambda: server.output().count("Started worker")  # granian says when a worker is ready  # noqa: E731
        assert wait_for(lambda: started() == 2, seconds=30)
        victim = children(server.pid)[0]
        os.kill(victim, signal.SIGKILL)
        # Gone means reaped: a killed thread-group leader shows as a zombie while its other threads
        # still hold its listening socket, and the calls queued on that socket are reset.
        assert wait_for(lambda: not Path(f"/proc/{victim}").exists(), seconds=5)
        assert [status() for _ in range(50)] == [200] * 50  # the other worker serves meanwhile
        assert wait_for(lambda: started() == 3, seconds=30)  # respawned
        assert len(children(server.pid)) == 2 and server.poll() is None
        assert [status() for _ in range(50)] == [200] * 50
