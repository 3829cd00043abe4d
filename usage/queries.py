"""The one reader of the usage store: every query on it is a function here (aggregates only,
never raw events), returning a Query to run.

Plain SQL with named parameters, so the same text runs on PostgreSQL (Django)
and, in the tests, on the WASM TimescaleDB (usage/tests/test_timescaledb.py),
which runs every function registered with @reader.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets align to UTC midnight


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    relation: str  # the aggregate read
    step: timedelta | None  # the bucket length; None for calendar months
    count: int  # buckets shown
    bucket_label: str  # strftime of a bucket on the x axis

    def bucket_sql(self) -> str:
        if self.step is None:
            return "date_trunc('month', bucket, 'UTC')"
        return (
            f"date_bin(INTERVAL '{int(self.step.total_seconds())} seconds', bucket, TIMESTAMPTZ '{ORIGIN.isoformat()}')"
        )

    def buckets(self, now: datetime) -> list[datetime]:
        """The starts of the buckets shown, oldest first, the current one last."""
        if self.step is None:
            month = now.year * 12 + now.month - 1
            return [datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC) for m in range(month - self.count + 1, month + 1)]
        current = ORIGIN + (now - ORIGIN) // self.step * self.step
        return [current - self.step * i for i in range(self.count - 1, -1, -1)]

    def bucket_end(self, start: datetime) -> datetime:
        if self.step is None:
            return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
        return start + self.step


RANGES = {
    r.key: r
    for r in [
        Range("24h", "24 hours", "api_calls_hourly", timedelta(hours=1), 24, "%H:%M"),
        Range("7d", "7 days", "api_calls_hourly", timedelta(hours=6), 28, "%a %H:%M"),
        Range("30d", "30 days", "api_calls_daily", timedelta(days=1), 30, "%d %b"),
        Range("12m", "12 months", "api_calls_daily", None, 12, "%b %Y"),
    ]
}
DEFAULT_RANGE = "7d"


@dataclass(frozen=True)
class Query:
    sql: str
    params: dict

    def rows(self) -> list[dict]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.params)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]


READERS: dict[str, Callable[..., Query]] = {}


def reader(function: Callable[..., Query]) -> Callable[..., Query]:
    """Register a query on the store, so the TimescaleDB check runs it."""
    READERS[function.__name__] = function
    return function


@reader
def series(range_: Range, start: datetime, end: datetime, account: int | None = None) -> Query:
    """Calls, refusals, words and characters per bucket and endpoint: one account's, or everyone's."""
    where = "account_id = %(account)s AND " if account is not None else ""
    return Query(
        f"""
        SELECT {range_.bucket_sql()} AS t, endpoint,
               sum(requests)::bigint AS requests, sum(errors)::bigint AS errors, sum(words)::bigint AS words, sum(characters)::bigint AS characters
        FROM {range_.relation}
        WHERE {where}bucket >= %(start)s AND bucket < %(end)s
        GROUP BY 1, 2
        ORDER BY 1, 2
    """,
        {"start": start, "end": end, "account": account},
    )


@reader
def quota_use(account: int, period: datetime, day: datetime, hour: datetime) -> Query:
    """Calls allowed (not refused) since the start of the billing period, of the day and of the hour."""
    return Query(
        """
        SELECT coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(period)s), 0)::bigint AS period,
               coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(day)s), 0)::bigint AS day,
               coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(hour)s), 0)::bigint AS hour
        FROM api_calls_hourly
        WHERE account_id = %(account)s AND bucket >= least(%(period)s, %(day)s)
    """,
        {"account": account, "period": period, "day": day, "hour": hour},
    )


@reader
def allowed_and_refused(account: int, since: datetime) -> Query:
    """One account's calls allowed and refused since a moment (the dashboard's "today")."""
    return Query(
        """
        SELECT coalesce(sum(requests - errors), 0)::bigint AS allowed, coalesce(sum(errors), 0)::bigint AS refused
        FROM api_calls_hourly
        WHERE account_id = %(account)s AND bucket >= %(since)s
    """,
        {"account": account, "since": since},
    )


@reader
def recent_refusals(account: int, since: datetime, limit: int = 5) -> Query:
    """One account's hours with refused calls, per endpoint, newest first."""
    return Query(
        """
        SELECT bucket, endpoint, errors FROM api_calls_hourly
        WHERE account_id = %(account)s AND bucket >= %(since)s AND errors > 0
        ORDER BY bucket DESC, endpoint
        LIMIT %(limit)s
    """,
        {"account": account, "since": since, "limit": limit},
    )


@reader
def totals(range_: Range, by: str, start: datetime, end: datetime, limit: int | None = None) -> Query:
    """Calls, refusals, words and characters per account or endpoint (`by`) over a window, busiest first."""
    column = {"account": "account_id", "endpoint": "endpoint"}[by]
    return Query(
        f"""
        SELECT {column}, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
               sum(words)::bigint AS words, sum(characters)::bigint AS characters
        FROM {range_.relation}
        WHERE bucket >= %(start)s AND bucket < %(end)s
        GROUP BY {column}
        ORDER BY requests DESC, {column}
        LIMIT %(limit)s
    """,
        {"start": start, "end": end, "limit": limit},
    )


@reader
def words_per_hour(accounts: dict[int, datetime], since: datetime, until: datetime) -> Query:
    """Words per account and hour in [since, until), each account counted from its own start (accounts)."""
    return Query(
        """
        SELECT h.account_id, h.bucket, sum(h.words)::bigint AS words
        FROM api_calls_hourly h
        JOIN unnest(%(accounts)s::bigint[], %(starts)s::timestamptz[]) AS account (id, start) ON account.id = h.account_id
        WHERE h.bucket >= %(since)s AND h.bucket < %(until)s AND h.bucket >= date_trunc('hour', account.start)
        GROUP BY h.account_id, h.bucket
        HAVING sum(h.words) > 0
        ORDER BY h.account_id, h.bucket
    """,
        {"accounts": list(accounts), "starts": list(accounts.values()), "since": since, "until": until},
    )


@reader
def period_use(accounts: dict[int, datetime]) -> Query:
    """Calls allowed and words per account since each one's start (accounts: its billing period's)."""
    return Query(
        """
        SELECT h.account_id, sum(h.requests - h.errors)::bigint AS calls, sum(h.words)::bigint AS words
        FROM api_calls_hourly h
        JOIN unnest(%(accounts)s::bigint[], %(starts)s::timestamptz[]) AS account (id, start) ON account.id = h.account_id
        WHERE h.bucket >= account.start
        GROUP BY h.account_id
        ORDER BY h.account_id
    """,
        {"accounts": list(accounts), "starts": list(accounts.values())},
    )


@reader
def store_counts() -> Query:
    """Rows in each relation, the oldest event and the quantities waiting for theirs (`manage.py usage_status`)."""
    return Query(
        """
        SELECT (SELECT count(*) FROM api_calls) AS events, (SELECT count(*) FROM api_calls_hourly) AS hourly,
               (SELECT count(*) FROM api_calls_daily) AS daily, (SELECT min(time) FROM api_calls) AS oldest,
               (SELECT count(*) FROM usage_quantity) AS quantities
    """,
        {},
    )
