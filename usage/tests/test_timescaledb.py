"""The TimescaleDB store, run in-process (PGlite + TimescaleDB 2.23, WASM), gives the same
aggregates and chart figures as the plain-PostgreSQL store on the same events."""

import json
import random
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from usage import queries as store_queries
from usage import store
from usage.models import Quantity
from usage.queries import RANGES, READERS, Query
from usage.recorder import MERGE_QUANTITIES, UsageRecorder

RUNNER = Path(__file__).parent / "timescaledb" / "run.mjs"
NOW = datetime(2027, 1, 15, 12, 30, tzinfo=UTC)
QUANTITY_TABLE = """
CREATE TABLE usage_quantity (
    request_id varchar(64) PRIMARY KEY, words integer NOT NULL, characters integer NOT NULL, received timestamptz NOT NULL
)"""


def make_events() -> list[tuple]:
    """Three accounts over 13 months, denser lately; some refused, most with reported quantities."""
    rng = random.Random(42)
    events = []
    for i in range(4000):
        age = timedelta(days=400) * rng.random() ** 3
        status = 429 if rng.random() < 0.1 else 200
        endpoint = rng.choice(["/v1/en/entities", "/v1/en/summarization", "/v1/de/generation"])
        events.append(((NOW - age).timestamp(), rng.choice([1, 2, 3]), 7, endpoint, "POST", status, f"r{i}", False))
    return events


def quantities(events) -> list[tuple]:
    return [
        (e[6], (i * 37) % 500, (i * 91) % 3000, datetime.fromtimestamp(e[0], UTC))
        for i, e in enumerate(events)
        if i % 5
    ]


def queries() -> dict[str, Query]:
    """Every reader of usage/queries.py, as the pages, the dashboard and metering call it, named `reader:case`."""
    checks = {}
    for key, range_ in RANGES.items():
        buckets = range_.buckets(NOW)
        window = (buckets[0], range_.bucket_end(buckets[-1]))
        for account in (1, 2):
            checks[f"series:{key}-{account}"] = store_queries.series(range_, *window, account)
        checks[f"series:{key}-all"] = store_queries.series(range_, *window)
        checks[f"totals:{key}-accounts"] = store_queries.totals(range_, "account", *window, limit=10)
        checks[f"totals:{key}-endpoints"] = store_queries.totals(range_, "endpoint", *window)
    checks["quota_use:1"] = store_queries.quota_use(
        1, datetime(2027, 1, 1, tzinfo=UTC), NOW - timedelta(days=1), NOW - timedelta(hours=1)
    )
    checks["allowed_and_refused:1"] = store_queries.allowed_and_refused(1, NOW - timedelta(days=30))
    checks["recent_refusals:2"] = store_queries.recent_refusals(2, NOW - timedelta(days=30))
    checks["words_per_hour:1-3"] = store_queries.words_per_hour(
        {1: NOW - timedelta(days=20), 3: NOW - timedelta(days=3)}, NOW - timedelta(days=30), NOW - timedelta(hours=1)
    )
    checks["period_use:1-2"] = store_queries.period_use(
        {1: datetime(2027, 1, 1, tzinfo=UTC), 2: NOW - timedelta(days=40)}
    )
    checks["store_counts:"] = store_queries.store_counts()
    assert {name.split(":")[0] for name in checks} == set(READERS), "a reader of the store is not checked here"
    checks["store:hourly"] = Query("SELECT * FROM api_calls_hourly ORDER BY bucket, account_id, endpoint", {})
    checks["store:daily"] = Query("SELECT * FROM api_calls_daily ORDER BY bucket, account_id, endpoint", {})
    return checks


def positional(sql: str, params: dict) -> tuple[str, list]:
    """%(name)s placeholders as $1, $2... for PGlite."""
    names = []

    def number(match):
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, sql), [plain(params[name]) for name in names]


def plain(value):
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.isoformat() if isinstance(value, datetime) else value


def on_timescaledb(events, quantities) -> dict[str, list]:
    rows = [f"(to_timestamp({t}), {a}, {k}, '{e}', '{m}', {s}, '{r}')" for t, a, k, e, m, s, r, _ in events]
    insert = "INSERT INTO api_calls (time, account_id, token_id, endpoint, method, status, request_id) VALUES "
    quantity_values = ", ".join(f"('{r}', {w}, {c}, '{t.isoformat()}')" for r, w, c, t in quantities)
    steps = [
        {"exec": "CREATE EXTENSION IF NOT EXISTS timescaledb"},
        {"exec": store.sql("api_calls.sql")},
        {"exec": store.sql("timescaledb.sql")},
        *({"exec": insert + ", ".join(rows[start : start + 100])} for start in range(0, len(rows), 100)),
        {"exec": QUANTITY_TABLE},
        {"exec": f"INSERT INTO usage_quantity VALUES {quantity_values}"},
        {"exec": MERGE_QUANTITIES},
    ]
    checks = queries()
    for phase in ("realtime", "refreshed"):  # before any refresh: real-time aggregation alone
        if phase == "refreshed":
            steps += [
                {"exec": f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)"}
                for view in ("api_calls_hourly", "api_calls_daily")
            ]
        for name, query in checks.items():
            text, args = positional(query.sql, query.params)
            steps.append({"query": text, "params": args, "name": f"{phase}:{name}"})
    steps.append(
        {
            "query": "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name IN "
            "('policy_refresh_continuous_aggregate', 'policy_retention', 'policy_compression')",
            "name": "policies",
        }
    )
    result = subprocess.run(
        ["node", RUNNER], input=json.dumps({"steps": steps}), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def on_postgres(events, quantity_rows, tmp_path) -> dict[str, list]:
    recorder = UsageRecorder(journal_dir=tmp_path)
    Quantity.objects.bulk_create(Quantity(request_id=r, words=w, characters=c) for r, w, c, _ in quantity_rows)
    Quantity.objects.update(received=NOW - timedelta(days=500))  # older than every event: the time bound holds
    for event in events:
        recorder.record(event)
    assert recorder.flush()
    return {name: [[normal(v) for v in row.values()] for row in query.rows()] for name, query in queries().items()}


def normal(value):
    """As the Node runner prints it: ISO timestamps in UTC with milliseconds, plain numbers."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value if isinstance(value, str) else int(value)


def test_the_timescaledb_store_matches_the_postgres_store(db, tmp_path):
    assert store.mode() == "postgres"
    events = make_events()
    quantity_rows = quantities(events)
    expected = on_postgres(events, quantity_rows, tmp_path)
    timescale = on_timescaledb(events, quantity_rows)
    assert timescale["policies"] == [[4]]  # two refresh policies, retention, columnstore
    assert sum(row[3] for row in expected["store:hourly"]) == len(events)
    for name, rows in expected.items():
        assert rows, name
        assert timescale[f"realtime:{name}"] == rows, name
        assert timescale[f"refreshed:{name}"] == rows, name
