"""Forward-auth throughput against the seed's Go service, side by side in one run.

Both servers run pinned to CPU 0 (Go with GOMAXPROCS=1; ours: granian, one
worker, serving backoffice.wsgi); wrk runs on CPU 1 with 32 keep-alive
connections. Ours checks every window of a plan (minute, hour, day, month and
an endpoint limit), verifies the token's HMAC and records usage on every call.
Then the p99 latency of ours at half its measured throughput (wrk paced by a
Lua delay). Prints the figures and the ratio.

Run with `bench/forward_auth` (installs Go and wrk from Debian if missing).
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = ROOT.parent / "shared" / "anchors" / "seed-go" / "main.go"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backoffice_bench")
DURATION = os.environ.get("BENCH_DURATION", "8s")
CONNECTIONS = 32
GO_PORT, OUR_PORT = 18080, 18081

sys.path.insert(0, str(ROOT))
from tests.servers import wait_for_port  # noqa: E402


def setup_database() -> str:
    """Migrate the bench database; return a token whose plan limits every window (never reached)."""
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=server_env(), check=True)

    os.environ.update(server_env())
    import django

    django.setup()
    from accounts.models import ApiToken, User
    from billing.models import Customer, EndpointLimit, Plan

    huge = 10**9
    plan, _ = Plan.objects.update_or_create(
        slug="bench", defaults=dict(name="Bench", per_minute=huge, per_hour=huge, per_day=huge, per_month=huge)
    )
    EndpointLimit.objects.update_or_create(plan=plan, pattern="/v1/*/entities", window="minute", defaults={"quota": huge})
    user, _ = User.objects.get_or_create(email="bench@example.com")
    Customer.objects.update_or_create(user=user, defaults={"plan": plan})
    user.tokens.all().delete()
    return ApiToken.issue(user, "bench")[1]


def server_env() -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"], "DATABASE_URL": DATABASE_URL, "DEBUG": "0", "SECRET_KEY": "bench-" + "x" * 50,
        "TOKEN_HASH_KEY": "bench-token-key", "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
    }


def wrk(port: int, path: str, headers: dict[str, str], duration: str, script: str | None = None) -> str:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script:
        args += ["-s", script]
    output = subprocess.run([*args, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"the server did not answer 200 to every call:\n{output}")
    return output


def requests_per_second(output: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def percentile(output: str, name: str) -> str:
    return re.search(rf"^\s+{name}\s+(\S+)", output, re.M).group(1)


def measure(port: int, path: str, headers: dict[str, str]) -> float:
    wrk(port, path, headers, "2s")  # warm-up
    return requests_per_second(wrk(port, path, headers, DURATION))


def main() -> None:
    token = setup_database()
    auth = {"Authorization": f"Bearer {token}", "X-Forwarded-Uri": "/v1/en/entities", "X-Forwarded-Method": "POST"}
    with tempfile.TemporaryDirectory() as tmp:
        anchor = Path(tmp) / "seed-go"
        gopath = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOCACHE": tmp, "HOME": tmp}
        subprocess.run(["go", "build", "-o", anchor, ANCHOR], env={**os.environ, **gopath}, check=True)
        go_env = {**os.environ, "GOMAXPROCS": "1", "LIMIT": "1000000000", "ADDR": f"127.0.0.1:{GO_PORT}"}
        go = subprocess.Popen(["taskset", "-c", "0", anchor], env=go_env, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(GO_PORT, go)
            go_rps = measure(GO_PORT, "/", {"Authorization": token})
        finally:
            go.terminate()

        granian = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1", "--no-ws"]
        ours = subprocess.Popen(
            ["taskset", "-c", "0", *granian, "--host", "127.0.0.1", "--port", str(OUR_PORT), "backoffice.wsgi:application"],
            cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(OUR_PORT, ours)
            our_rps = measure(OUR_PORT, "/forward-auth", auth)
            pace = Path(tmp) / "pace.lua"  # each connection waits so that all together send half our throughput
            delay_ms = max(0.0, 1000 * CONNECTIONS / (our_rps / 2))
            pace.write_text(f"function delay() return {delay_ms:.3f} end\n")
            paced = wrk(OUR_PORT, "/forward-auth", auth, DURATION, str(pace))
        finally:
            ours.terminate()

    print(f"seed Go service (1 core):       {go_rps:10,.0f} requests/s")
    print(f"our forward-auth (1 process):   {our_rps:10,.0f} requests/s")
    print(f"ratio ours / Go:                {our_rps / go_rps:10.2f}  (goal: at least 0.50)")
    print(f"at half load ({requests_per_second(paced):,.0f} requests/s): "
          f"p50 {percentile(paced, '50%')}, p99 {percentile(paced, '99%')}  (goal: p99 under 2 ms)")


if __name__ == "__main__":
    main()
