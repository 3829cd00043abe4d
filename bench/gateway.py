"""Calls/s through the same Traefik, with the shipped configuration (backoffice.gateway), three ways:

(a) forwardAuth to our forward-auth as deployed: manage.py serve_forward_auth, counters in
    Redis, the usage flusher process writing to PostgreSQL;
(b) forwardAuth to the seed's Go service (/work/shared/anchors/seed-go);
(c) no middleware: a router without forwardAuth, rendered for this benchmark only (the baseline:
    Traefik's own cost).

Each in front of the same trivial upstream (bench/upstream, Go), so the figures measure the gateway
and its forward-auth hop. wrk runs on CPU 1 with 32 keep-alive connections; the servers (Traefik,
the auth service, the upstream) run first all on CPU 0 (what one core serves end to end: the cost
of a call), then on both CPUs (the layout of the README's earlier figures). Each figure is the
median of three runs after a warm-up (bench/forward_auth.py's `measure`); any answer but 200 stops
the run. Prints the figures and the ratios ours/Go and ours/no middleware, per layout.

Run with `bench/gateway` (installs Go and wrk from Debian if missing); about three minutes.
BENCH_DATABASE_URL, BENCH_REDIS_URL and BENCH_DURATION (per run, default 5s) override the defaults.
"""

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from backoffice.gateway import dynamic_configuration, static_command, wait_for_routes  # noqa: E402
from backoffice.ports import free_port, running  # noqa: E402
from bench.forward_auth import ANCHOR, CONNECTIONS, measure, require_anchor, server_env, setup_database  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
HOST = "127.0.0.1"  # the router's Host rule (as in `make run`): wrk's own Host header matches
PATH = "/v1/en/entities"  # the bench plan limits this endpoint too (setup_database)
LAYOUTS = {"servers on CPU 0": "0", "servers on CPUs 0-1": "0,1"}  # wrk: CPU 1


def main() -> None:
    require_anchor()
    token = setup_database()
    call = {"Authorization": f"Bearer {token}"}
    gateway_port, upstream_port, go_port, our_port = free_port(), free_port(), free_port(), free_port()
    ours_env = {
        **server_env(),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # this virtualenv's granian
        "HOST": "127.0.0.1",
        "PORT": str(our_port),
        "WEB_WORKERS": "1",
        "REDIS_URL": REDIS_URL,
        "FORWARD_AUTH_BACKEND": "redis",
    }
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        anchor, upstream = directory / "seed-go", directory / "upstream"
        gopath = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOCACHE": tmp, "HOME": tmp}
        for binary, source in [(anchor, ANCHOR), (upstream, ROOT / "bench" / "upstream" / "main.go")]:
            subprocess.run(["go", "build", "-o", binary, source], env={**os.environ, **gopath}, check=True)

        for layout, cpus in LAYOUTS.items():
            go_env = {"PATH": os.environ["PATH"], "GOMAXPROCS": str(len(cpus.split(",")))}

            def on(args: list, port: int, env: dict[str, str]):
                return running(["taskset", "-c", cpus, *args], port, env, cwd=ROOT)

            @contextmanager
            def gateway(forward_auth_address: str, forward_auth: bool = True):
                dynamic = dynamic_configuration(
                    directory,
                    forward_auth_address,
                    f"http://127.0.0.1:{upstream_port}",
                    HOST,
                    forward_auth=forward_auth,
                )
                command = [
                    "taskset",
                    "-c",
                    cpus,
                    "env",
                    f"GOMAXPROCS={go_env['GOMAXPROCS']}",
                    *static_command(directory, gateway_port, dynamic),
                ]
                with running(command, gateway_port):
                    wait_for_routes(gateway_port, HOST)
                    yield

            with on([upstream], upstream_port, {**go_env, "ADDR": f"127.0.0.1:{upstream_port}"}):
                ours_command = [sys.executable, "manage.py", "serve_forward_auth"]
                with on(ours_command, our_port, ours_env), gateway(f"http://127.0.0.1:{our_port}/forward-auth"):
                    ours = measure(gateway_port, PATH, call)
                anchor_env = {**go_env, "LIMIT": "1000000000", "ADDR": f"127.0.0.1:{go_port}"}
                with on([anchor], go_port, anchor_env), gateway(f"http://127.0.0.1:{go_port}/"):  # its only route
                    go = measure(gateway_port, PATH, call)
                with gateway("http://127.0.0.1:9/unused", forward_auth=False):
                    bare = measure(gateway_port, PATH, call)
            figures[layout] = {"ours": ours, "go": go, "bare": bare}

    print(f"Calls/s through Traefik with the shipped configuration, wrk on CPU 1, {CONNECTIONS} connections:")
    print(f"{'':54}" + "".join(f"{layout:>22}" for layout in figures))
    rows = [
        ("forwardAuth to ours (serve_forward_auth, Redis)", lambda f: f"{f['ours']:,.0f}"),
        ("forwardAuth to the seed's Go service", lambda f: f"{f['go']:,.0f}"),
        ("no middleware (benchmark-only router)", lambda f: f"{f['bare']:,.0f}"),
        ("ratio ours / Go", lambda f: f"{f['ours'] / f['go']:.2f}"),
        ("ratio ours / no middleware", lambda f: f"{f['ours'] / f['bare']:.2f}"),
    ]
    for label, value in rows:
        print(f"{label:54}" + "".join(f"{value(f):>22}" for f in figures.values()))


if __name__ == "__main__":
    main()
