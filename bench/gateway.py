"""Calls/s through the same Traefik, with the shipped configuration (backoffice.gateway), three ways:

(a) forwardAuth to our forward-auth as deployed: deploy/serve (granian), 1 worker, counters in
    Redis, the usage flusher writing to PostgreSQL;
(b) forwardAuth to the seed's Go service (/work/shared/anchors/seed-go);
(c) no middleware: a router without forwardAuth, rendered for this benchmark only (the baseline:
    Traefik's own cost).

Each in front of the same trivial upstream (bench/upstream, Go), so the figures measure the gateway
and its forward-auth hop. Every server (Traefik with GOMAXPROCS=1, the auth service, the upstream)
runs on CPU 0, wrk on CPU 1 with 32 keep-alive connections: a figure is what one core serves end to
end. Each figure is the median of three runs after a warm-up (bench/forward_auth.py's `measure`);
any answer but 200 stops the run. Prints the figures and the ratios ours/Go and ours/no middleware.

Run with `bench/gateway` (installs Go and wrk from Debian if missing). BENCH_DATABASE_URL,
BENCH_REDIS_URL and BENCH_DURATION (per run, default 5s) override the defaults.
"""

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from backoffice.gateway import dynamic_configuration, static_command  # noqa: E402
from bench.forward_auth import ANCHOR, CONNECTIONS, measure, server, server_env, setup_database  # noqa: E402
from tests.servers import free_port, traefik  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
HOST = "127.0.0.1"  # the router's Host rule (as in `make run`): wrk's own Host header matches
PATH = "/v1/en/entities"  # the bench plan limits this endpoint too (setup_database)


def main() -> None:
    token = setup_database()
    call = {"Authorization": f"Bearer {token}"}
    gateway_port, upstream_port, go_port, our_port = free_port(), free_port(), free_port(), free_port()
    one_core = {"PATH": os.environ["PATH"], "GOMAXPROCS": "1"}
    ours = {
        **server_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # this virtualenv's granian
        "HOST": "127.0.0.1", "PORT": str(our_port), "WEB_WORKERS": "1", "REDIS_URL": REDIS_URL, "FORWARD_AUTH_BACKEND": "redis",
    }

    @contextmanager
    def gateway(directory: Path, forward_auth_address: str, forward_auth: bool = True):
        dynamic = dynamic_configuration(directory, forward_auth_address, f"http://127.0.0.1:{upstream_port}", HOST,
                                        forward_auth=forward_auth)
        command = ["taskset", "-c", "0", "env", "GOMAXPROCS=1", *static_command(directory, gateway_port, dynamic)]
        with traefik(command, gateway_port, HOST):
            yield

    with tempfile.TemporaryDirectory() as tmp:
        anchor, upstream = Path(tmp) / "seed-go", Path(tmp) / "upstream"
        gopath = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOCACHE": tmp, "HOME": tmp}
        for binary, source in [(anchor, ANCHOR), (upstream, ROOT / "bench" / "upstream" / "main.go")]:
            subprocess.run(["go", "build", "-o", binary, source], env={**os.environ, **gopath}, check=True)

        with server([upstream], upstream_port, {**one_core, "ADDR": f"127.0.0.1:{upstream_port}"}):
            with server(["deploy/serve"], our_port, ours), gateway(Path(tmp), f"http://127.0.0.1:{our_port}/forward-auth"):
                our_rps = measure(gateway_port, PATH, call)
            go_env = {**one_core, "LIMIT": "1000000000", "ADDR": f"127.0.0.1:{go_port}"}
            with server([anchor], go_port, go_env), gateway(Path(tmp), f"http://127.0.0.1:{go_port}/"):  # its only route
                go_rps = measure(gateway_port, PATH, call)
            with gateway(Path(tmp), "http://127.0.0.1:9/unused", forward_auth=False):
                bare_rps = measure(gateway_port, PATH, call)

    print(f"Traefik with the shipped configuration; servers on CPU 0, wrk on CPU 1, {CONNECTIONS} connections:")
    print(f"  forwardAuth to ours (deploy/serve, 1 worker, Redis): {our_rps:10,.0f} calls/s")
    print(f"  forwardAuth to the seed's Go service:                {go_rps:10,.0f} calls/s")
    print(f"  no middleware (benchmark-only router):               {bare_rps:10,.0f} calls/s")
    print(f"ratio ours / Go:             {our_rps / go_rps:.2f}")
    print(f"ratio ours / no middleware:  {our_rps / bare_rps:.2f}")


if __name__ == "__main__":
    main()
