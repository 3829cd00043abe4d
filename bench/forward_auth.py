"""Forward-auth throughput against the seed's Go service, side by side in one run.

Both servers run pinned to CPU 0: Go with GOMAXPROCS=1; ours, the production command
(manage.py serve_forward_auth), its usage flusher process included. wrk runs on CPU 1
with 32 keep-alive connections, and so does the local PostgreSQL during the run (its
processes are pinned there, then given every CPU again): the database's own work is
not the measured core's, as it would not be in production. (Left where the kernel puts
it, PostgreSQL's COPY work lands on CPU 0 too.) Ours checks every window of a plan (minute, hour, day,
month and an endpoint limit), verifies the token's HMAC and records usage on every call.

The real figure: BENCH_TOKENS (1,000,000) tokens in the database, usage written to
PostgreSQL during the run (into an api_calls emptied first), and 10 token changes a
second (revocations and their undoing, through the change feed), measured in
BENCH_ROUNDS (5) rounds that alternate with Go, so the machine's drift (large on a
shared VM) touches both alike; each figure is the median of its runs, the ratio the
median of each round's ratio. Also shown, measured before the
rounds (memory counters allow one deciding process per database): the same decision
under granian (backoffice.wsgi, with its flusher thread), as the pages' server answers
it. Then the latency of ours, and of Go, at half our real throughput with Poisson
arrivals from bench/loadgen (an open-loop generator: wrk's pacing fires its connections
in step, in whole milliseconds), in BENCH_LATENCY_ROUNDS (3) rounds of
BENCH_LATENCY_DURATION (5s) that alternate as the throughput rounds do: a p99 rests on
the few stalls of a run, and a shared VM stalls both servers in phases (the Go service
alone measured p99 3 ms and 30 ms minutes apart); each figure is the median of its
runs. The generator runs at real-time priority where it may (root): on the core it
shares with PostgreSQL, it would otherwise wait behind the COPY of our calls before
reading an answer, and count that wait as ours (0.6 ms of p99 at 21,000 calls/s; Go's
run has no COPY to wait behind). Prints the figures and the ratios.

Run with `bench/forward_auth` (installs Go and wrk from Debian if missing).
"""

import functools
import itertools
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The measuring instrument, kept outside this repository (the workplace's shared anchors): SEED_GO names it.
ANCHOR = Path(os.environ.get("SEED_GO", ROOT.parent / "shared" / "anchors" / "seed-go" / "main.go"))
DURATION = os.environ.get("BENCH_DURATION", "5s")
LATENCY_DURATION = os.environ.get("BENCH_LATENCY_DURATION", "5s")
LATENCY_ROUNDS = int(os.environ.get("BENCH_LATENCY_ROUNDS", 3))
CONNECTIONS = 32
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
GO_PORT, OUR_PORT = 18080, 18081

sys.path.insert(0, str(ROOT))
from backoffice.ports import wait_for_port  # noqa: E402
from bench import database  # noqa: E402


def setup_database() -> str:
    """BENCH_TOKENS tokens, and the token measured, whose plan limits every window (at a height never reached)."""
    database.prepare()
    from bench.forward_auth_scale import populate

    populate(int(os.environ.get("BENCH_TOKENS", 1_000_000)))
    from django.db import connection

    from accounts.models import ApiToken, User
    from billing.models import Customer, EndpointLimit, Plan

    # The calls of earlier runs go: without TimescaleDB (whose inserts touch only the current chunk)
    # PostgreSQL's work per insert grows with them, on the generator's core, and runs would drift.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE api_calls")

    huge = 10**9
    plan, _ = Plan.objects.update_or_create(
        slug="bench", defaults=dict(name="Bench", per_minute=huge, per_hour=huge, per_day=huge, per_month=huge)
    )
    EndpointLimit.objects.update_or_create(
        plan=plan, pattern="/v1/*/entities", window="minute", defaults={"quota": huge}
    )
    user = User.objects.filter(email="bench@example.com").first() or User.objects.create_user("bench@example.com")
    organization = user.default_organization()
    Customer.objects.update_or_create(organization=organization, defaults={"plan": plan})
    organization.tokens.all().delete()
    return ApiToken.issue(organization, "bench")[1]


def server_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], **database.ENV}


def wrk(port, path, headers: dict[str, str], duration: str, script: str | None = None, connections=CONNECTIONS) -> str:
    args = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script:
        args += ["-s", script]
    output = subprocess.run(
        [*args, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"the server did not answer 200 to every call:\n{output}")
    return output


def requests_per_second(output: str) -> float:
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def measure(port: int, path: str, headers: dict[str, str]) -> float:
    """The median of three runs, after a warm-up."""
    wrk(port, path, headers, "2s")
    return statistics.median(requests_per_second(wrk(port, path, headers, DURATION)) for _ in range(3))


def paced(loadgen: Path, port: int, path: str, headers: dict[str, str], rate: float) -> str:
    """Latency at a fixed rate of Poisson arrivals (bench/loadgen), after a warm-up."""
    args = [
        *real_time(),
        "taskset",
        "-c",
        "1",
        "env",
        "GOMAXPROCS=1",
        loadgen,
        "-url",
        f"http://127.0.0.1:{port}{path}",
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    subprocess.run([*args, "-rate", str(rate), "-duration", "2s"], capture_output=True, check=True)
    return subprocess.run(
        [*args, "-rate", str(rate), "-duration", LATENCY_DURATION], capture_output=True, text=True, check=True
    ).stdout


PERCENTILES = ("p50", "p99", "p999", "max")


def figures(output: str) -> dict[str, float]:
    """bench/loadgen's failures, and its percentiles in ms."""
    return {key: float(value) for key, value in re.findall(r"(failures|p50|p99|p999|max) ([\d.]+)", output)}


@functools.cache
def real_time() -> list[str]:
    """The latency generator's command prefix: first on its core, where the kernel lets it be."""
    return ["chrt", "--fifo", "50"] if subprocess.run(["chrt", "--fifo", "50", "true"]).returncode == 0 else []


def require_anchor() -> None:
    if not ANCHOR.is_file():
        sys.exit(f"No seed Go service at {ANCHOR}: set SEED_GO to the anchor's main.go (shared/anchors/seed-go).")


def main() -> None:
    require_anchor()
    os.sched_setaffinity(0, {1})  # this process (its thread making token changes) off the measured core
    with postgres_on_cpu(1):
        compare()


def compare() -> None:
    token = setup_database()
    auth = {"Authorization": f"Bearer {token}", "X-Forwarded-Uri": "/v1/en/entities", "X-Forwarded-Method": "POST"}
    go_call = (GO_PORT, "/", {"Authorization": token})
    our_call = (OUR_PORT, "/forward-auth", auth)
    with tempfile.TemporaryDirectory() as tmp:
        anchor, loadgen = Path(tmp) / "seed-go", Path(tmp) / "loadgen"
        gopath = {"GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOCACHE": tmp, "HOME": tmp}
        for binary, source in [(anchor, ANCHOR), (loadgen, ROOT / "bench" / "loadgen" / "main.go")]:
            subprocess.run(["go", "build", "-o", binary, source], env={**os.environ, **gopath}, check=True)

        go_env = {**os.environ, "GOMAXPROCS": "1", "LIMIT": "1000000000", "ADDR": f"127.0.0.1:{GO_PORT}"}
        our_env = {
            **server_env(),
            "HOST": "127.0.0.1",
            "PORT": str(OUR_PORT),
            "WEB_WORKERS": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # this virtualenv's granian
        }
        ours = [sys.executable, "manage.py", "serve_forward_auth"]
        with server(["deploy/serve"], OUR_PORT, our_env), token_changes(per_second=10):
            granian_rps = measure(*our_call)
        time.sleep(2)
        with (
            server([anchor], GO_PORT, go_env),
            server(ours, OUR_PORT, our_env),
            token_changes(per_second=10),
        ):
            calls = {"go": go_call, "ours": our_call}
            for call in calls.values():
                wrk(*call, "2s")  # warm-up
            runs = {name: [] for name in calls}
            for _ in range(ROUNDS):
                for name, call in calls.items():
                    runs[name].append(requests_per_second(wrk(*call, DURATION)))
                    time.sleep(2)  # our flusher writes its last second of calls before the next run, not during it
            go_rps, our_rps = (statistics.median(runs[name]) for name in ("go", "ours"))
            latencies = {name: [] for name in calls}
            for _ in range(LATENCY_ROUNDS):
                for name, call in calls.items():
                    latencies[name].append(paced(loadgen, *call, our_rps / 2))
                    time.sleep(2)

    ratios = [ours / go for ours, go in zip(runs["ours"], runs["go"], strict=True)]
    tokens = int(os.environ.get("BENCH_TOKENS", 1_000_000))
    print(
        f"{tokens:,} tokens, usage written to PostgreSQL, 10 token changes/s; medians of {ROUNDS} rounds of {DURATION}"
    )
    print(f"seed Go service (1 core):                          {go_rps:10,.0f} calls/s")
    print(f"ours (serve_forward_auth, 1 core):                 {our_rps:10,.0f} calls/s")
    print(
        f"ratio ours / Go:                                   {statistics.median(ratios):10.2f}   (goal: at least 0.60)"
    )
    print(f"  each round: {', '.join(f'{ratio:.2f}' for ratio in ratios)}")
    print(
        f"the same decision under granian (backoffice.wsgi): {granian_rps:10,.0f} calls/s  "
        f"({granian_rps / go_rps:.2f} of Go; 3 runs before the rounds)"
    )
    priority = "the generator at real-time priority" if real_time() else "the generator NOT at real-time priority"
    print(
        f"at half our throughput ({our_rps / 2:,.0f} calls/s), Poisson arrivals, {priority}; "
        f"medians of {LATENCY_ROUNDS} rounds of {LATENCY_DURATION} (goal: p99 under 2 ms):"
    )
    for name, label in [("ours", "ours:"), ("go", "Go:  ")]:
        rounds = [figures(output) for output in latencies[name]]
        medians = "  ".join(f"{key} {statistics.median(run[key] for run in rounds):.3f} ms" for key in PERCENTILES)
        each = ", ".join(f"{run['p99']:.2f}" for run in rounds)
        failures = sum(run["failures"] for run in rounds)
        print(f"  {label} {medians}   (each round's p99: {each}){f'  FAILURES {failures}' if failures else ''}")
    print("  (Go at the same load: what the machine and the generator take of it)")


@contextmanager
def postgres_on_cpu(cpu: int):
    """The local PostgreSQL's processes (new backends follow the postmaster) pinned to `cpu` meanwhile."""
    pids = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    pin = lambda cpus: [subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], capture_output=True) for pid in pids]  # noqa: E731
    if not pids or any(result.returncode for result in pin(str(cpu))):
        print("PostgreSQL's processes could not be pinned (not local, or not ours): it shares CPU 0", file=sys.stderr)
    try:
        yield
    finally:
        pin(f"0-{os.cpu_count() - 1}")


@contextmanager
def token_changes(per_second: int):
    """Revoke and restore bench tokens (not the one measured) at this rate, from another thread."""
    import psycopg

    from bench.forward_auth_scale import secret_of

    stop = threading.Event()

    def change() -> None:
        with psycopg.connect(database.DATABASE_URL, autocommit=True) as conn:
            for n in itertools.count():
                if stop.wait(1 / per_second):
                    return
                prefix = secret_of(n // 2 % 1000)[:12]
                conn.execute(
                    "UPDATE accounts_apitoken SET revoked_at = %s WHERE prefix = %s",
                    ["2027-01-01" if n % 2 == 0 else None, prefix],
                )

    thread = threading.Thread(target=change)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        with psycopg.connect(database.DATABASE_URL, autocommit=True) as conn:  # none left revoked
            prefixes = [secret_of(n)[:12] for n in range(1000)]
            conn.execute("UPDATE accounts_apitoken SET revoked_at = NULL WHERE prefix = ANY(%s)", [prefixes])


@contextmanager
def server(args: list, port: int, env: dict[str, str]):
    """A server pinned to CPU 0 (with any process it starts), on a port nothing answers yet: else another
    process would be measured instead, or beside it (ours shares its port with SO_REUSEPORT)."""
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            sys.exit(f"Port {port} is taken: stop what listens there (a server left from an earlier run?).")
    process = subprocess.Popen(
        ["taskset", "-c", "0", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
