"""The forward-auth server: Traefik's calls answered on one event loop, without WSGI.

`manage.py serve_forward_auth` listens on $HOST:$PORT (0.0.0.0:8002) for `/forward-auth` and
`/forward-auth/release`, and answers them with the same `ForwardAuth` as the Django views
and backoffice.wsgi. Under granian each call crossed threads and took the GIL from a pool
of them; here one thread parses (llhttp, through httptools), decides and writes, as the
seed's Go service does, and the usage flusher is a child process (usage/flusher.py).
Answers are written at the end of each turn of the loop, once every call read in it is
decided, rather than each as it is made: the client's reader, woken for the first, finds
the others there (measured at full load: 30,000 calls/s written at once, 40,000 so; p99
at 16,000/s 3.2 against 2.6 ms).

Answers that would wait on the database (a token's first call, the plans before the
database has ever answered) or on Redis (every decision with its counters) are decided on a
thread pool, so a slow database or Redis holds up only them; later calls on the same
connection wait for theirs, in order. A request whose head is malformed, or larger than
MAX_HEAD bytes, gets 400 or 431, one begun and left unfinished for PARTIAL_SECONDS 408,
and the connection is closed (after answering the requests before it); so is a connection
idle for IDLE_SECONDS, or whose client does not read its answers (it is read no further).
SIGTERM or SIGINT: stop listening, finish the calls in hand, hand the last usage events to
the flusher and wait for it to write them.

One process decides for the whole database with memory counters (the default). With
FORWARD_AUTH_BACKEND=redis, several can share the port (SO_REUSEPORT), one per core, each
with FORWARD_AUTH_REDIS_CONNECTIONS threads for the round trips.
"""

import asyncio
import concurrent.futures
import gc
import logging
import os
import signal
import time
from collections.abc import Callable

import httptools
import uvloop
from django.conf import settings

from usage.flusher import FlusherProcess
from usage.forward_auth import HEADERS_READ, STATUS_LINES, ForwardAuth, problem

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # the request line and headers; Traefik sends a few hundred bytes
PARTIAL_SECONDS = 30.0  # a request begun and not finished
IDLE_SECONDS = 300.0  # a kept-alive connection with no request (Traefik's pool keeps them 90 s)
TIDY_SECONDS = 1.0  # how often connections are swept and new long-lived objects frozen
# The headers a decision reads, by lower-case name, and their environ keys: the others are not
# kept (Traefik sends a dozen more), nor are look-alikes with "_" for "-".
HEADER_KEYS = {key.removeprefix("HTTP_").lower().replace("_", "-").encode(): key for key in HEADERS_READ}
FAILED = problem(500, "Internal server error", "Forward-auth failed; retry.")


def response(answer, keep_alive: bool, head_only: bool = False) -> bytes:
    head = [f"HTTP/1.1 {STATUS_LINES[answer.status]}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in answer.headers]
    if answer.status != 204:
        head.append(f"Content-Length: {len(answer.body)}\r\n")
    if not keep_alive:
        head.append("Connection: close\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1", "replace") + (b"" if head_only else answer.body)


class Server:
    def __init__(self, auth: ForwardAuth, pool: concurrent.futures.Executor):
        self.auth = auth
        self.pool = pool
        self.routes = {b"/forward-auth": self.decide, b"/forward-auth/release": auth.release}
        self.connections: set[Connection] = set()
        self.deciding: set[asyncio.Future] = set()  # decisions on the pool
        self.unsent: list[Connection] = []  # connections with answers to write at the end of this turn of the loop

    def write_soon(self, connection: "Connection") -> None:
        if not self.unsent:
            asyncio.get_running_loop().call_soon(self.write_all)  # after every call read in this turn is decided
        self.unsent.append(connection)

    def write_all(self) -> None:
        unsent, self.unsent = self.unsent, []
        for connection in unsent:
            connection.write()

    def decide(self, environ: dict):
        return self.auth.answer(environ, may_wait=False)

    def sweep(self) -> None:
        """Close the connections holding part of a request for PARTIAL_SECONDS, or idle for IDLE_SECONDS."""
        now = time.monotonic()
        for connection in list(self.connections):
            if connection.started and connection.started < now - PARTIAL_SECONDS:
                connection.fail(408, "Request timeout")
            elif not connection.started and not connection.waiting and connection.seen < now - IDLE_SECONDS:
                connection.close()


class Connection(asyncio.Protocol):
    def __init__(self, server: Server):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.environ: dict = {}
        self.url = b""
        self.head_size = 0
        self.seen = time.monotonic()  # when the last request began
        self.started = 0.0  # when the request being read began (0: none)
        self.queue: list[Callable[[], None]] = []  # what waits behind a decision on the pool, in order
        self.answers: list[bytes] = []  # answered, not yet written (Server.write_all)
        self.waiting = False  # for a decision on the pool
        self.write_paused = False  # the client is not reading its answers
        self.broken = False  # the input is not HTTP any more: read nothing further
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)
        # What refers back to this connection goes with it, so that it is freed without the collector.
        self.parser = self.transport = None
        self.queue.clear()
        self.answers.clear()

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # answered as any call; what follows it is not HTTP
            self.broken = True
            self._after_answers(self.close)
        except httptools.HttpParserError:
            if self.head_size > MAX_HEAD:
                self.fail(431, "Request header fields too large")
            else:
                self.fail(400, "Malformed HTTP request")

    # Flow control: read nothing more while the client does not read its answers.
    def pause_writing(self) -> None:
        self.write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.waiting and not self.closed:
            self.transport.resume_reading()

    # The parser's callbacks.

    def on_message_begin(self) -> None:
        self.environ = {"REMOTE_ADDR": self.peer}
        self.url = b""
        self.head_size = 0
        self.seen = self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)
        if self.head_size > MAX_HEAD:
            raise ValueError("request head too large")  # the parser stops, and says so

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            raise ValueError("request head too large")
        key = HEADER_KEYS.get(name.lower())
        if key is not None:
            value = value.decode("latin-1")
            environ = self.environ
            environ[key] = f"{environ[key]},{value}" if key in environ else value

    def on_message_complete(self) -> None:
        self.started = 0.0
        if self.closed:  # after an answer that closed the connection: nothing more is decided
            return
        environ = self.environ
        environ["REQUEST_METHOD"] = self.parser.get_method().decode("latin-1")
        path = self.url.partition(b"?")[0]  # routed as bytes: no decision reads PATH_INFO
        keep_alive = self.parser.should_keep_alive()
        if self.waiting:
            self.queue.append(lambda: self._handle(environ, path, keep_alive))
        else:
            self._handle(environ, path, keep_alive)

    # Answers.

    def _handle(self, environ: dict, path: bytes, keep_alive: bool) -> None:
        handler = self.server.routes.get(path)
        try:
            answer = (
                problem(404, "Not found", "Forward-auth answers /forward-auth.")
                if handler is None
                else handler(environ)
            )
        except Exception:
            log.exception("Forward-auth: a decision failed")
            answer = FAILED
        head_only = environ["REQUEST_METHOD"] == "HEAD"
        if answer is not None:
            return self._send(answer, keep_alive, head_only)
        # It would wait on the database or Redis: decided on the pool, this connection paused meanwhile.
        self.waiting = True
        self.transport.pause_reading()
        future = asyncio.get_running_loop().run_in_executor(self.server.pool, self.server.auth.answer, environ)
        self.server.deciding.add(future)
        future.add_done_callback(lambda done: self._decided(done, keep_alive, head_only))

    def _decided(self, future: asyncio.Future, keep_alive: bool, head_only: bool) -> None:
        self.server.deciding.discard(future)
        self.waiting = False
        error = future.exception()  # not raised here: its traceback would hold this frame, and so this connection
        if error is None:
            answer = future.result()
        else:
            log.error("Forward-auth: a decision failed", exc_info=error)
            answer = FAILED
        self._send(answer, keep_alive, head_only)
        while self.queue and not self.waiting and not self.closed:
            self.queue.pop(0)()
        if not self.waiting and not self.closed and not self.write_paused:
            self.transport.resume_reading()

    def _send(self, answer, keep_alive: bool, head_only: bool = False) -> None:
        if self.closed:
            return
        if not self.answers:
            self.server.write_soon(self)
        self.answers.append(response(answer, keep_alive, head_only))
        if not keep_alive:
            self.close()

    def write(self) -> None:
        """Write the answers waiting (pipelined calls' in one write)."""
        if self.answers and self.transport is not None:
            self.transport.write(b"".join(self.answers))
            self.answers.clear()

    def _after_answers(self, then: Callable[[], None]) -> None:
        """`then`, once every request read so far is answered."""
        if self.waiting:
            self.queue.append(then)
        else:
            then()

    def fail(self, status: int, title: str) -> None:
        """Answer the request being read with this error, after those before it, and close."""
        self.broken = True
        self._after_answers(lambda: self._send(problem(status, title, f"{title}."), keep_alive=False))

    def close(self) -> None:
        """Close once the answers waiting are written."""
        self.closed = True
        self.write()
        self.transport.close()


def freeze_new_objects() -> None:
    """Move the objects made since the last call (the tokens looked up, their counters) out of the
    collector's full passes, which would otherwise stall the loop for a time growing with the
    tokens in use (28 ms at 10,000, 100 ms at 20,000). Garbage among them is collected first (a
    pass over them alone: the older ones are frozen already). A frozen object is still freed
    when no longer referenced; only one that later becomes part of an unreachable reference cycle
    would stay: the decisions' state makes none (bench/forward_auth_scale.py counts what the
    collector finds), and a closed connection breaks its own (connection_lost)."""
    gc.collect()
    gc.freeze()


async def serve(auth: ForwardAuth, host: str, port: int) -> None:
    threads = settings.FORWARD_AUTH_REDIS_CONNECTIONS if auth.counters.waits else 4  # else: look-ups only
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="forward-auth-decide")
    server = Server(auth, pool)
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: Connection(server), host, port, backlog=1024, reuse_port=True)
    stop = asyncio.Event()
    for name in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(name, stop.set)
    log.info("Forward-auth listening on %s:%d", host, port)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), TIDY_SECONDS)
        except TimeoutError:
            server.sweep()
            freeze_new_objects()
    listening.close()
    while server.deciding:  # the decisions in hand, and those queued behind them, answered
        await asyncio.wait(server.deciding)
        await asyncio.sleep(0)
    pool.shutdown()
    for connection in list(server.connections):
        connection.close()  # after writing what it holds:
    await asyncio.sleep(0.05)


def main() -> None:
    """Serve until SIGTERM or SIGINT, then hand the last usage events to the flusher and wait for it."""
    auth = ForwardAuth.from_settings()
    auth.start()  # the plans and the change feed's reader (on a thread), before the loop and the first call
    flusher = FlusherProcess(auth.recorder)
    flusher.start()
    freeze_new_objects()  # what was loaded so far
    try:
        uvloop.run(serve(auth, os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", 8002))))
    finally:
        for name in (signal.SIGTERM, signal.SIGINT):  # a second one must not cut the last shipment short
            signal.signal(name, signal.SIG_IGN)
        flusher.stop()
        auth.stop()
