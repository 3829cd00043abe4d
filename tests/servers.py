"""Real servers for end-to-end tests (the backoffice under granian, Traefik, the example NLP API, a tiny upstream)
and waiting on them."""

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings
from django.db import connection

from backoffice.gateway import wait_for_routes
from backoffice.ports import Output, Server, free_port, running, wait_for_port  # noqa: F401  (the tests' too)


def wait_for(condition, seconds: float):
    """The first truthy result of `condition` within `seconds`, polled every 50 ms; else False."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    return False


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
def forward_auth_server(port: int, **env: str):
    """The forward-auth server as deployed (manage.py serve_forward_auth) on this port."""
    environment = backoffice_env(HOST="127.0.0.1", PORT=str(port), **env)
    with running(
        [sys.executable, "manage.py", "serve_forward_auth"], port, environment, cwd=settings.BASE_DIR
    ) as process:
        yield process


@contextmanager
def traefik(command: list[str], port: int, host: str = "api.example.com"):
    """Traefik run by `command` (from backoffice.gateway), once it routes calls for `host` on `port`."""
    with running(command, port, {"PATH": os.environ["PATH"]}) as process:
        wait_for_routes(port, host, 10)
        yield process


@contextmanager
def nlp_api(port: int, backoffice_url: str, service_token: str = "", forward_auth_url: str = ""):
    """The example NLP API (uvicorn), releasing leases to `forward_auth_url` (else `backoffice_url`)
    and reporting quantities to `backoffice_url`."""
    env = {
        "PATH": os.environ["PATH"],
        "BACKOFFICE_URL": backoffice_url,
        "FORWARD_AUTH_URL": forward_auth_url or backoffice_url,
        "USAGE_SERVICE_TOKEN": service_token,
    }
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "nlp_api.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
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


def processes_using(directory: Path) -> list[str]:
    """Live processes whose command line or environment names `directory` (all that make run started)."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            text = ((process / "cmdline").read_bytes() + (process / "environ").read_bytes()).decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if str(directory) in text:
            found.append(text.replace("\0", " ")[:200])
    return found


def stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc stat file (a process's or a thread's) after its name, which may hold spaces:
    state, parent, ..."""
    return stat.read_text().rpartition(")")[2].split()


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (granian's workers, the usage flusher), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat)
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)
