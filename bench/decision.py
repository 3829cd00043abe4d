"""The in-process cost of one forward-auth decision for a cached token: no network, no server.

Low-noise where the HTTP benchmarks (bench/forward_auth) swing with the machine's load: compare
two commits by running this in a checkout of each, in turn, pinned to one CPU:
    BENCH_DATABASE_URL=... taskset -c 0 .venv/bin/python bench/decision.py
Prints microseconds per decision, the best of 5 rounds of 100,000 (usage recording included, its
flush not: the flusher thread is not started).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_TOKENS", "1000")
from bench.forward_auth import setup_database  # noqa: E402

ROUNDS, CALLS = 5, 100_000


def main() -> None:
    secret = setup_database()
    from usage.forward_auth import ForwardAuth
    from usage.limiter import MemoryCounters
    from usage.recorder import UsageRecorder

    auth = ForwardAuth(MemoryCounters(), fail_open=False, refresh_seconds=3600, lease_ttl=30, recorder=UsageRecorder())
    auth.refresh()
    environ = {
        "HTTP_AUTHORIZATION": f"Bearer {secret}",
        "HTTP_X_FORWARDED_URI": "/v1/en/entities",
        "HTTP_X_FORWARDED_METHOD": "POST",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    }
    assert auth.answer(environ).status == 200
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            auth.answer(environ)
        rounds.append((time.perf_counter() - start) / CALLS * 1e6)
        auth.recorder.drain()  # the buffer a flusher would have written
    print(f"one decision: {min(rounds):.2f} µs (best of {ROUNDS} x {CALLS:,})")


if __name__ == "__main__":
    main()
