"""The forward-auth server: Traefik's calls answered on one event loop, without WSGI.

`manage.py serve_forward_auth` listens on $HOST:$PORT (0.0.0.0:8002) for `/forward-auth` and
`/forward-auth/release`, and answers them with the same `ForwardAuth` as the Django views
and backoffice.wsgi. Under granian each call crossed threads and took the GIL from a pool
of them; here one thread parses (llhttp, through httptools), decides and writes, as the
seed's Go service does, and the usage flusher is a child process (usage/flusher.py).

Answers that would wait on the database (a token's first call, the plans before the
database has ever answered) are decided on a small thread pool, so a slow database holds
up only them; later calls on the same connection wait for theirs, in order. A request
whose head is malformed, or larger than MAX_HEAD bytes, gets 400 or 431 and the connection
is closed, as is one that has sent part of a request and nothing more for IDLE_SECONDS.
SIGTERM or SIGINT: stop listening, finish the calls in hand, hand the last usage events
to the flusher and wait for it to write them.

One process decides for the whole database with memory counters (the default). With
FORWARD_AUTH_BACKEND=redis, several can share the port (SO_REUSEPORT), one per core; each
decision then waits for its Redis round trip on the loop.
"""

import asyncio
import concurrent.futures
import gc
import logging
import os
import signal
import time

import httptools
import uvloop

from usage.flusher import FlusherProcess
from usage.forward_auth import ForwardAuth, problem, unavailable

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # the request line and headers; Traefik sends a few hundred bytes
IDLE_SECONDS = 30.0
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
HEADER_KEYS: dict[bytes, str] = {}  # header name -> its WSGI environ key, for the names seen first
MAX_HEADER_KEYS = 1000


class HeadTooLarge(Exception):
    pass


def environ_key(name: bytes) -> str:
    key = HEADER_KEYS.get(name)
    if key is None:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(HEADER_KEYS) < MAX_HEADER_KEYS:
            HEADER_KEYS[name] = key
    return key


def response(answer, keep_alive: bool) -> bytes:
    head = [f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, '')}\r\n"]
    head += [f"{name}: {value}\r\n" for name, value in answer.headers]
    if answer.status != 204:
        head.append(f"Content-Length: {len(answer.body)}\r\n")
    if not keep_alive:
        head.append("Connection: close\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1", "replace") + answer.body


class Server:
    def __init__(self, auth, pool: concurrent.futures.Executor):
        self.auth = auth
        self.pool = pool
        self.routes = {b"/forward-auth": self.decide, b"/forward-auth/release": auth.release}
        self.connections: set[Connection] = set()

    def decide(self, environ: dict):
        return self.auth.answer(environ, may_wait=False)

    def sweep(self) -> None:
        """Close the connections holding part of a request for IDLE_SECONDS."""
        deadline = time.monotonic() - IDLE_SECONDS
        for connection in [c for c in self.connections if c.started and c.started < deadline]:
            connection.fail(408, "Request timeout")


class Connection(asyncio.Protocol):
    def __init__(self, server: Server):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.environ: dict = {}
        self.url = b""
        self.head_size = 0
        self.started = 0.0  # when the request being read began (0: none)
        self.queue: list[tuple[dict, bytes, bool]] = []  # requests waiting behind one decided on the pool
        self.waiting = False
        self.upgraded = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except HeadTooLarge:
            self.fail(431, "Request header fields too large")
        except httptools.HttpParserUpgrade:  # answered as any call; what follows it is not HTTP
            self.upgraded = True
            if not self.waiting:
                self._close()
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, HeadTooLarge):
                self.fail(431, "Request header fields too large")
            else:
                self.fail(400, "Malformed HTTP request")

    # Flow control: stop reading while the client does not read its answers.
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.waiting:
            self.transport.resume_reading()

    # The parser's callbacks.

    def on_message_begin(self) -> None:
        self.environ = {"REMOTE_ADDR": self.peer}
        self.url = b""
        self.head_size = 0
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        key = environ_key(name)
        value = value.decode("latin-1")
        environ = self.environ
        environ[key] = f"{environ[key]},{value}" if key in environ else value

    def on_message_complete(self) -> None:
        self.started = 0.0
        environ = self.environ
        environ["REQUEST_METHOD"] = self.parser.get_method().decode("latin-1")
        path = self.url.partition(b"?")[0]
        environ["PATH_INFO"] = path.decode("latin-1")
        request = (environ, path, self.parser.should_keep_alive())
        if self.waiting:
            self.queue.append(request)
        else:
            self._handle(*request)

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            raise HeadTooLarge

    # Answers.

    def _handle(self, environ: dict, path: bytes, keep_alive: bool) -> None:
        handler = self.server.routes.get(path)
        if handler is None:
            return self._send(problem(404, "Not found", "Forward-auth answers /forward-auth."), keep_alive)
        answer = handler(environ)
        if answer is not None:
            return self._send(answer, keep_alive)
        # It would wait on the database: decided on the pool, this connection paused meanwhile.
        self.waiting = True
        self.transport.pause_reading()
        future = asyncio.get_running_loop().run_in_executor(self.server.pool, self.server.auth.answer, environ)
        future.add_done_callback(lambda done: self._decided(done, keep_alive))

    def _decided(self, future: asyncio.Future, keep_alive: bool) -> None:
        self.waiting = False
        if self.closed:
            return
        try:
            answer = future.result()
        except Exception:
            log.exception("Forward-auth: a decision failed")
            answer = unavailable("Forward-auth failed")
        self._send(answer, keep_alive)
        while self.queue and not self.waiting and not self.closed:
            self._handle(*self.queue.pop(0))
        if self.upgraded:
            self._close()
        elif not self.waiting and not self.closed:
            self.transport.resume_reading()

    def _send(self, answer, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(response(answer, keep_alive))
        if not keep_alive:
            self._close()

    def fail(self, status: int, title: str) -> None:
        self.queue.clear()
        self._send(problem(status, title, f"{title}."), keep_alive=False)
        self._close()

    def _close(self) -> None:
        self.closed = True
        self.transport.close()


async def serve(auth: ForwardAuth, host: str, port: int) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="forward-auth-look-up")
    server = Server(auth, pool)
    loop = asyncio.get_running_loop()
    listening = await loop.create_server(lambda: Connection(server), host, port, backlog=1024, reuse_port=True)
    stop = asyncio.Event()
    for name in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(name, stop.set)
    log.info("Forward-auth listening on %s:%d", host, port)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), IDLE_SECONDS / 3)
        except TimeoutError:
            server.sweep()
    listening.close()
    for connection in list(server.connections):
        if not connection.waiting:
            connection.transport.close()
    pool.shutdown(wait=True)  # the decisions in hand (each records its call)
    await asyncio.sleep(0)  # their answers


def main() -> None:
    """Serve until SIGTERM or SIGINT, then hand the last usage events to the flusher and wait for it."""
    auth = ForwardAuth.from_settings()
    auth.start()  # the plans and the change feed's reader (on a thread), before the loop and the first call
    flusher = FlusherProcess(auth.recorder)
    flusher.start()
    gc.freeze()  # what was loaded so far stays out of the collector's full passes
    try:
        uvloop.run(serve(auth, os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", 8002))))
    finally:
        flusher.stop()
        auth.stop()
