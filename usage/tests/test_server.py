"""The forward-auth server (manage.py serve_forward_auth) over real sockets, with its usage flusher process."""

import asyncio
import concurrent.futures
import contextlib
import gc
import marshal
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import uvloop
from django.db import connection

from accounts.models import ApiToken
from billing.models import Plan
from tests.servers import children, forward_auth_server, free_port, stat_fields, wait_for
from usage.flusher import LENGTH
from usage.models import ApiCall
from usage.server import Connection, Server

# Transactional (the server shares the database); usage_store empties the unmanaged usage tables.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("usage_store")]


def call(port: int, headers: str = "", path: str = "/forward-auth", method: str = "GET") -> bytes:
    """One raw HTTP/1.1 request (`headers`: lines ending in CRLF); the whole answer, once the server closes."""
    return exchange(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` while reading the answers (the server reads no further while its answers are not read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,))
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join()
        return bytes(received)


def bearer(secret: str) -> str:
    return f"Authorization: Bearer {secret}\r\nX-Forwarded-Uri: /v1/en/entities\r\nX-Forwarded-Method: POST\r\n"


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def statuses(answers: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)]


def test_it_answers_as_the_django_view_does(secret):
    port = free_port()
    with forward_auth_server(port):
        allowed = call(port, bearer(secret))
        assert status(allowed) == 200
        token = ApiToken.objects.get()
        assert f"X-Token-Id: {token.pk}\r\n".encode() in allowed
        assert f"X-Organization-Id: {token.organization_id}\r\n".encode() in allowed
        assert b"X-Plan: tiny\r\n" in allowed and b"X-Request-Id: " in allowed
        missing = call(port)
        assert status(missing) == 401 and b"application/problem+json" in missing and b"WWW-Authenticate" in missing
        assert status(call(port, "Authorization: Bearer nlp_madeup00_" + "x" * 40 + "\r\n")) == 401
        assert [status(call(port, bearer(secret))) for _ in range(3)] == [200, 200, 429]  # Tiny: 3 a minute
        assert status(call(port, path="/elsewhere")) == 404
        assert status(call(port, path="/forward-auth/release")) == 405
        assert status(call(port, "X-Lease-Id: nothing\r\n", "/forward-auth/release", "POST")) == 404


def test_a_new_token_works_on_its_first_call_and_a_revoked_one_is_refused_within_a_second(customer, secret):
    port = free_port()
    with forward_auth_server(port):
        assert status(call(port, bearer(secret))) == 200
        token, fresh = ApiToken.issue(customer.default_organization(), "fresh")
        assert status(call(port, bearer(fresh))) == 200  # decided on the pool: a database look-up
        token.revoke()
        revoked = time.monotonic()
        assert wait_for(lambda: status(call(port, bearer(fresh))) == 401, seconds=2)
        assert time.monotonic() - revoked < 1.5


def test_hostile_requests_get_a_4xx_and_the_server_goes_on(secret):
    port = free_port()
    with forward_auth_server(port):
        assert status(exchange(port, b"NOT HTTP AT ALL\r\n\r\n")) == 400
        assert status(exchange(port, b"GET /forward-auth HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")) == 400
        assert status(call(port, "Authorization: Bearer nlp_\x00\x00\x00\r\n")) == 400  # NUL: no header value
        invalid_utf8 = b"GET /forward-auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nlp_\xff\xfe\xc3(\r\nConnection: close\r\n\r\n"
        assert status(exchange(port, invalid_utf8)) == 401
        assert status(call(port, "X-Big: " + "a" * 70_000 + "\r\n")) == 431
        assert status(call(port, "".join(f"X-Many-{n}: {n}\r\n" for n in range(5000)))) == 431
        upgrade = b"GET /forward-auth HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        assert status(exchange(port, upgrade)) == 401  # answered as any call, then the connection closed
        deep = "/forward-auth?" + "a" * 60_000
        assert status(call(port, bearer(secret), path=deep)) == 200
        assert status(call(port, bearer(secret))) == 200


def test_the_headers_a_decision_reads_pass_among_traefiks_others(customer, secret, plan):
    Plan.objects.filter(pk=plan.pk).update(concurrency=1)
    customer.default_organization().tokens.update(allowed_networks=["10.0.0.0/8"])
    traefik = "User-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: 10.1.2.3\r\n"
    port = free_port()
    with forward_auth_server(port):
        allowed = call(port, traefik + bearer(secret) + "X-Forwarded-For: 10.1.2.3\r\n")
        assert status(allowed) == 200
        assert status(call(port, traefik + bearer(secret) + "X-Forwarded-For: 10.1.2.3\r\n")) == 429  # one at a time
        lease = re.search(rb"X-Lease-Id: (\S+)", allowed).group(1).decode()
        assert status(call(port, f"X-Lease-Id: {lease}\r\n", "/forward-auth/release", "POST")) == 204
        assert status(call(port, traefik + bearer(secret) + "X-Forwarded-For: 192.0.2.1\r\n")) == 403
        # Two X-Forwarded-For lines are one list: the client is its last entry.
        both = "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 10.1.2.3\r\n"
        assert status(call(port, traefik + bearer(secret) + both)) == 200
        # A look-alike with "_" for "-" is not the header (nor is it to the WSGI servers that drop it).
        assert (
            status(call(port, traefik + bearer(secret) + "X-Forwarded-For: 192.0.2.1\r\nX_Forwarded_For: 10.1.2.3\r\n"))
            == 403
        )


def test_pipelined_calls_are_answered_in_order_even_behind_a_database_look_up(customer, secret):
    port = free_port()
    with forward_auth_server(port):
        assert status(call(port, bearer(secret))) == 200  # cached from now on
        fresh = ApiToken.issue(customer.default_organization(), "fresh")[1]
        request = "GET /forward-auth HTTP/1.1\r\nHost: x\r\n{}\r\n"
        pipelined = request.format(bearer(fresh)) + request.format(bearer(secret)) + request.format("")
        answers = exchange(port, (pipelined + "GET /forward-auth HTTP/1.1\r\nConnection: close\r\n\r\n").encode())
        assert statuses(answers) == [200, 200, 401, 401]
        first, second = answers.split(b"HTTP/1.1 ")[1:3]
        fresh_id = ApiToken.objects.get(name="fresh").pk
        assert f"X-Token-Id: {fresh_id}\r\n".encode() in first and f"X-Token-Id: {fresh_id}".encode() not in second


def test_nothing_after_a_closing_call_is_decided_and_an_error_waits_its_turn(customer, secret):
    port = free_port()
    with forward_auth_server(port) as server:
        fresh = ApiToken.issue(customer.default_organization(), "fresh")[1]
        request = "GET /forward-auth HTTP/1.1\r\nHost: x\r\n{}\r\n"
        closing = request.format(bearer(secret) + "Connection: close\r\n")
        answers = exchange(port, (request.format(bearer(fresh)) + closing + request.format(bearer(secret))).encode())
        assert statuses(answers) == [200, 200]  # the third was never decided: it would count against the plan
        answers = exchange(port, (request.format(bearer(fresh)) + "NOT HTTP\r\n\r\n").encode())
        assert statuses(answers) == [200, 400]  # the error after the answer before it
        head = exchange(port, request.format("Connection: close\r\n").replace("GET", "HEAD").encode())
        assert status(head) == 401 and head.endswith(b"\r\n\r\n")  # no body
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert ApiCall.objects.count() == 3


def test_a_slow_database_holds_up_only_the_calls_that_wait_on_it(customer, secret):
    port = free_port()
    with forward_auth_server(port):
        assert status(call(port, bearer(secret))) == 200
        fresh = ApiToken.issue(customer.default_organization(), "fresh")[1]
        answers = {}
        with connection.cursor() as cursor:
            cursor.execute("BEGIN; LOCK TABLE accounts_apitoken IN ACCESS EXCLUSIVE MODE")
            waiting = threading.Thread(target=lambda: answers.update(fresh=call(port, bearer(fresh))))
            waiting.start()
            time.sleep(0.3)  # the look-up waits on the lock
            started = time.monotonic()
            assert status(call(port, bearer(secret))) == 200  # the second of Tiny's 3 a minute
            assert time.monotonic() - started < 0.5 and "fresh" not in answers
            cursor.execute("COMMIT")
        waiting.join(timeout=10)
        assert status(answers["fresh"]) == 200


def test_a_silent_redis_holds_up_only_the_calls_that_wait_on_it(secret):
    """Redis counters: each decision's round trip is taken on the pool, never on the loop that reads the others."""
    port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers
        redis_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with forward_auth_server(port, FORWARD_AUTH_BACKEND="redis", REDIS_URL=redis_url, FORWARD_AUTH_FAIL_OPEN="1"):
            assert status(call(port, bearer(secret))) == 200  # the token is in memory now; Redis failed
            time.sleep(1.1)  # after a failure, Redis is asked again a second later
            answers = {}
            waiting = threading.Thread(target=lambda: answers.update(token=call(port, bearer(secret))))
            waiting.start()
            time.sleep(0.1)  # its round trip waits for Redis's answer (0.5 s)
            started = time.monotonic()
            assert status(call(port)) == 401  # no token: nothing to ask Redis
            assert time.monotonic() - started < 0.3 and "token" not in answers
            waiting.join(timeout=10)
    assert status(answers["token"]) == 200 and b"X-RateLimit-Unchecked: 1\r\n" in answers["token"]


def test_every_call_is_written_after_a_clean_stop(secret):
    port = free_port()
    with forward_auth_server(port) as server:
        answered = [status(call(port, bearer(secret))) for _ in range(6)]
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert answered == [200, 200, 200, 429, 429, 429]
    assert sorted(ApiCall.objects.values_list("status", flat=True)) == sorted(answered)


def test_a_killed_server_loses_only_what_it_had_not_shipped(secret):
    port = free_port()
    with forward_auth_server(port) as server:
        answered = [status(call(port, bearer(secret))) for _ in range(5)]
        time.sleep(0.5)  # shipped (every 0.1 s), not yet written (every second)
        (flusher,) = children(server.pid)
        server.kill()
        # The flusher writes what it holds at the end of its input.
        assert wait_for(lambda: ApiCall.objects.count() == len(answered), seconds=10)
        assert wait_for(lambda: not os.path.exists(f"/proc/{flusher}"), seconds=10)


def test_a_killed_flusher_is_replaced_and_later_calls_are_written(secret):
    port = free_port()
    with forward_auth_server(port) as server:
        (flusher,) = children(server.pid)
        os.kill(flusher, signal.SIGKILL)
        assert wait_for(lambda: children(server.pid) != [flusher], seconds=5)  # a zombie until the server looks
        answered = [status(call(port, bearer(secret))) for _ in range(4)]
        assert wait_for(lambda: children(server.pid) and children(server.pid) != [flusher], seconds=10)
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert answered == [200, 200, 200, 429]
    assert ApiCall.objects.count() == 4


def test_a_flusher_that_stops_reading_leaves_the_server_bounded_and_loses_nothing(secret, tmp_path):
    port = free_port()
    with forward_auth_server(port, USAGE_MEMORY_LIMIT="1000", USAGE_JOURNAL_DIR=str(tmp_path)) as server:
        (flusher,) = children(server.pid)
        os.kill(flusher, signal.SIGSTOP)
        try:
            request = f"GET /forward-auth HTTP/1.1\r\nHost: x\r\n{bearer(secret)}\r\n"
            calls = (request * 30_000 + "GET /forward-auth HTTP/1.1\r\nConnection: close\r\n\r\n").encode()
            assert len(statuses(exchange(port, calls, timeout=60))) == 30_001  # more events than its pipe holds
            # Beyond USAGE_MEMORY_LIMIT, the server journals what the stopped flusher does not take.
            assert wait_for(lambda: list(tmp_path.glob("*.jsonl")), seconds=10)
        finally:
            os.kill(flusher, signal.SIGCONT)
        server.terminate()
        assert server.wait(timeout=60) == 0
    assert ApiCall.objects.count() == 30_000  # the last call had no token: nothing to record
    assert ApiCall.objects.values("request_id").distinct().count() == 30_000
    assert not list(tmp_path.glob("*.jsonl"))  # replayed


def test_a_flusher_killed_with_a_full_pipe_loses_only_the_whole_frames_in_it(secret):
    """The frame the server was writing when its flusher died (most often cut short in the pipe) is
    shipped whole to the next one, not lost nor written twice; the whole frames that died in the pipe
    are the only loss, as with any killed worker."""
    port = free_port()
    with forward_auth_server(port) as server:
        (flusher,) = children(server.pid)
        stop(flusher)
        request = f"GET /forward-auth HTTP/1.1\r\nHost: x\r\n{bearer(secret)}\r\n"
        calls = (request * 20_000 + "GET /forward-auth HTTP/1.1\r\nConnection: close\r\n\r\n").encode()
        assert len(statuses(exchange(port, calls, timeout=60))) == 20_001  # more events than the pipe holds
        time.sleep(0.5)  # shipped as far as the pipe takes them
        stop(server.pid)  # while the pipe is read here, nothing is shipped into it
        try:
            pipe = os.open(f"/proc/{flusher}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
            in_pipe = bytearray()
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(pipe, 1 << 20):
                    in_pipe += chunk
            os.close(pipe)
            os.kill(flusher, signal.SIGKILL)
            # Dead before the server goes on: else it would ship into the room just read, and the calls
            # in that room would die with the flusher uncounted here.
            assert wait_for(lambda: stat_fields(Path(f"/proc/{flusher}/stat"))[0] == "Z", seconds=5)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert wait_for(lambda: children(server.pid) and children(server.pid) != [flusher], seconds=10)
        server.terminate()
        assert server.wait(timeout=60) == 0
    lost = whole_frames(bytes(in_pipe))
    assert lost > 0
    assert ApiCall.objects.count() == 20_000 - lost
    assert ApiCall.objects.values("request_id").distinct().count() == 20_000 - lost


def stop(pid: int) -> None:
    """SIGSTOP `pid`, and wait until each of its threads has stopped (the signal is delivered asynchronously)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    assert wait_for(lambda: {stat_fields(stat)[0] for stat in tasks.glob("*/stat")} == {"T"}, seconds=5)


def whole_frames(data: bytes) -> int:
    """The events in the whole frames (usage/flusher.py) that begin `data`, before any cut short."""
    events = offset = 0
    while offset + LENGTH.size <= len(data):
        (size,) = LENGTH.unpack_from(data, offset)
        end = offset + LENGTH.size + size
        if end > len(data):
            break
        events += len(marshal.loads(data[offset + LENGTH.size : end]))
        offset = end
    return events


def test_a_closed_connection_is_freed_without_the_collector(auth, customer, secret, monkeypatch):
    """The server freezes its objects every second (gc.freeze): a connection kept by a reference
    cycle until the collector's next pass would, frozen, never be freed."""
    port = free_port()
    fresh, unlucky = (ApiToken.issue(customer.default_organization(), name)[1] for name in ("fresh", "unlucky"))
    request = "GET /forward-auth HTTP/1.1\r\nHost: x\r\n{}\r\n"
    calls = [
        request.format(bearer(secret) + "Connection: close\r\n"),  # decided on the pool
        request.format(bearer(secret) + "Connection: close\r\n"),
        "NOT HTTP\r\n\r\n",
        # Behind a decision on the pool, a closing call, then an error that never gets its turn.
        request.format(bearer(fresh)) + request.format(bearer(secret) + "Connection: close\r\n") + "NOT HTTP\r\n\r\n",
        request.format(bearer(unlucky) + "Connection: close\r\n"),  # its look-up fails
    ]

    def fail(prefix):
        raise RuntimeError("the look-up failed")

    def leave(data: bytes) -> None:
        """Send a call and half of another, and go, reading nothing."""
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(data)

    async def serve_them():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            server = Server(auth, pool)
            listening = await asyncio.get_running_loop().create_server(lambda: Connection(server), "127.0.0.1", port)
            answers = b""
            for call in calls:
                if call is calls[-1]:
                    monkeypatch.setattr(auth, "_look_up", fail)
                answers += await asyncio.to_thread(exchange, port, call.encode())
            await asyncio.to_thread(leave, request.format(bearer(secret)).encode() + b"GET /")
            listening.close()
            await asyncio.sleep(0.1)  # the last connection's loss reaches it
        return answers

    gc.collect()
    gc.disable()  # what the collector would free stays to be seen
    try:
        answers = uvloop.run(serve_them())
        left = [thing for thing in gc.get_objects() if isinstance(thing, Connection)]
    finally:
        gc.enable()
    assert statuses(answers) == [200, 200, 400, 200, 429, 500]  # Tiny: 3 calls a minute
    assert left == []
