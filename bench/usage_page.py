"""The Usage page fragment for a heavy customer: a year of calls, 10 million raw events.

Times the fragment htmx asks for when the range changes (server time, Django
test client, in-process) for each range, and the same chart figures computed
from the raw events instead of the aggregates, in the same run. Prints p50 and
p95 of each. The first run loads the events (about two minutes); later runs
reuse them. Run: `.venv/bin/python bench/usage_page.py`.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import database  # noqa: E402

EVENTS = 10_000_000
REPEAT = 40
RAW_REPEAT = 5  # a year of raw events takes seconds a query
ENDPOINTS = ["/v1/en/entities", "/v1/en/summarization", "/v1/de/generation", "/v1/fr/entities", "/v1/en/sentiment"]

RAW_SQL = """
    SELECT {bucket} AS t, endpoint, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors,
           sum(words) AS words, sum(characters) AS characters
    FROM api_calls
    WHERE account_id = %(account)s AND time >= %(start)s AND time < %(end)s
    GROUP BY 1, 2 ORDER BY 1, 2
"""


def load_year(user_id: int) -> None:
    """10 million calls of one customer spread over the last 365 days, with quantities."""
    from django.db import connection

    from usage.recorder import UsageRecorder

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM api_calls WHERE account_id = %s", [user_id])
        if cursor.fetchone()[0] >= EVENTS:
            return
        cursor.execute("TRUNCATE api_calls, api_calls_hourly, api_calls_daily")
    recorder = UsageRecorder(batch_size=100_000)
    now, span = time.time(), 365 * 86400
    started = time.perf_counter()
    for chunk in range(0, EVENTS, 1_000_000):
        for i in range(chunk, chunk + 1_000_000):
            recorder.record(
                (
                    now - span * i / EVENTS,
                    user_id,
                    None,
                    ENDPOINTS[i % 5],
                    "POST",
                    429 if i % 25 == 0 else 200,
                    f"y{i}",
                    False,
                )
            )
        assert recorder.flush()
        print(f"  loaded {chunk + 1_000_000:,} events ({time.perf_counter() - started:.0f} s)", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE api_calls SET words = 40, characters = 250 WHERE account_id = %s AND status = 200", [user_id]
        )
        cursor.execute("VACUUM ANALYZE api_calls")


def timings(run, repeat: int = REPEAT) -> tuple[float, float]:
    """p50 and p95 (the largest sample when there are fewer than 20) in ms, after a warm-up."""
    run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(samples, n=20)[18] if repeat >= 20 else max(samples)
    return statistics.median(samples), p95


def main() -> None:
    database.prepare()
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from usage.queries import RANGES, Query

    user, _ = User.objects.get_or_create(email="heavy@example.com")
    load_year(user.pk)
    client = Client()
    client.force_login(user)
    print(f"{'range':>6} {'fragment p50':>13} {'p95':>8}   {'from raw events p50':>20} {'p95':>9}")
    for key, range_ in RANGES.items():

        def fragment():
            response = client.get("/usage/", {"range": key}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="usage-report")
            assert response.status_code == 200

        buckets = range_.buckets(timezone.now())
        params = {"account": user.pk, "start": buckets[0], "end": range_.bucket_end(buckets[-1])}
        raw_sql = RAW_SQL.format(bucket=range_.bucket_sql().replace("bucket", "time"))

        def raw():
            Query(raw_sql, params).rows()

        page, from_raw = timings(fragment), timings(raw, RAW_REPEAT)
        print(f"{key:>6} {page[0]:10.1f} ms {page[1]:5.1f} ms   {from_raw[0]:17.1f} ms {from_raw[1]:6.1f} ms")
    print("goal: fragment p95 under 50 ms")
    connection.close()


if __name__ == "__main__":
    main()
