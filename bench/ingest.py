"""Usage ingest into PostgreSQL: the flusher's batched COPY against one INSERT per event, in one run.

Both write the same kind of events into api_calls with the hourly and daily
roll-ups maintained (plain-PostgreSQL triggers). Run: `.venv/bin/python bench/ingest.py`.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import database  # noqa: E402

BATCHED_EVENTS = 1_000_000
NAIVE_EVENTS = 20_000


def events(count: int, prefix: str):
    start = time.time() - 3600
    endpoints = ["/v1/en/entities", "/v1/en/summarization", "/v1/de/generation"]
    for i in range(count):
        yield (
            start + i * 0.001,
            1 + i % 50,
            1 + i % 200,
            endpoints[i % 3],
            "POST",
            429 if i % 20 == 0 else 200,
            f"{prefix}{i}",
            False,
        )


def main() -> None:
    database.prepare()
    from django.db import connection

    from usage.recorder import UsageRecorder

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE api_calls, api_calls_hourly, api_calls_daily")

    recorder = UsageRecorder()
    batch = list(events(BATCHED_EVENTS, f"b{time.time()}-"))
    started = time.perf_counter()
    for event in batch:
        recorder.record(event)
    appended = time.perf_counter()
    assert recorder.flush()
    batched = BATCHED_EVENTS / (time.perf_counter() - appended)
    append_ns = (appended - started) / BATCHED_EVENTS * 1e9

    insert = (
        "INSERT INTO api_calls (time, account_id, token_id, endpoint, method, status, request_id, unchecked) "
        "VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for event in events(NAIVE_EVENTS, f"n{started}-"):
            cursor.execute(insert, event)  # autocommit: one statement, one transaction per event
    naive = NAIVE_EVENTS / (time.perf_counter() - started)

    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(requests) FROM api_calls_hourly")
        assert cursor.fetchone()[0] == BATCHED_EVENTS + NAIVE_EVENTS  # every event rolled up once

    print(f"record() on the request path:   {append_ns:8.0f} ns per event")
    print(
        f"batched COPY (the flusher):     {batched:10,.0f} events/s  ({BATCHED_EVENTS:,} events; goal: at least 100,000)"
    )
    print(f"one INSERT per event:           {naive:10,.0f} events/s  ({NAIVE_EVENTS:,} events)")
    print(f"ratio:                          {batched / naive:10.1f}x  (goal: at least 20x)")


if __name__ == "__main__":
    main()
