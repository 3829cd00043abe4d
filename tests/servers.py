"""Real servers for end-to-end tests (the backoffice under granian, Traefik, the example NLP API, a tiny upstream)
and waiting on them."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings
from django.db import connection

from backoffice.ports import free_port, wait_for_port  # noqa: F401  (the tests' too)


def wait_for(condition, seconds: float):
    """The first truthy result of `condition` within `seconds`, polled every 50 ms; else False."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    return False


class Output:
    """All a process has printed, read by a thread as it comes (a full pipe would stall the process)."""

    def __init__(self, process: subprocess.Popen):
        self._lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self._lines.extend(process.stdout), daemon=True)
        self._reader.start()

    def __call__(self) -> str:
        return "".join(self._lines)

    def complete(self, seconds: float = 10) -> str:
        """Everything, once the process has closed its output (it has exited)."""
        self._reader.join(seconds)
        return self()


@contextmanager
def running(args: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None):
    process = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_port(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def backoffice_env(**extra: str) -> dict[str, str]:
    """The environment of a backoffice process that shares this test run's database and keys."""
    db = connection.settings_dict
    return {
        "PATH": os.environ["PATH"],
        "DEBUG": "1",
        "SECRET_KEY": settings.SECRET_KEY,
        "TOKEN_HASH_KEY": settings.TOKEN_HASH_KEY,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "FORWARD_AUTH_REFRESH_SECONDS": "0.2",
        **extra,
    }


@contextmanager
def backoffice(port: int, workers: int = 1, **env: str):
    """The backoffice as deployed: the production command (deploy/serve, granian) on this port."""
    environment = backoffice_env(HOST="127.0.0.1", PORT=str(port), WEB_WORKERS=str(workers), **env)
    environment["PATH"] = f"{Path(sys.executable).parent}:{environment['PATH']}"  # this virtualenv's granian
    with running(["deploy/serve"], port, environment, cwd=settings.BASE_DIR) as process:
        yield process


@contextmanager
def traefik(command: list[str], port: int, host: str = "api.example.com"):
    """Traefik run by `command` (from backoffice.gateway), once it routes calls for `host` on `port`:
    it listens before its file provider has loaded the routes, and answers 404 until then."""
    with running(command, port, {"PATH": os.environ["PATH"]}) as process:
        if not wait_for(lambda: _status(port, host) != 404, 10):
            raise TimeoutError(f"Traefik on port {port} has no route for {host}")
        yield process


def _status(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/v1/", headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


@contextmanager
def nlp_api(port: int, backoffice_url: str, service_token: str = ""):
    """The example NLP API (uvicorn), releasing leases and reporting quantities to `backoffice_url`."""
    env = {"PATH": os.environ["PATH"], "BACKOFFICE_URL": backoffice_url, "USAGE_SERVICE_TOKEN": service_token}
    uvicorn = [sys.executable, "-m", "uvicorn", "nlp_api.app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with running(uvicorn, port, env, cwd=settings.BASE_DIR) as process:
        yield process


class EchoHandler(BaseHTTPRequestHandler):
    """An upstream that answers with the headers it received, as JSON."""

    def do_GET(self):
        body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@contextmanager
def echo_upstream(port: int):
    server = ThreadingHTTPServer(("127.0.0.1", port), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
