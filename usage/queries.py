"""The SQL behind the usage charts, quotas and the staff overview: aggregates only, never raw events.

Plain SQL with named parameters, so the same text runs on PostgreSQL (Django)
and, in the tests, on the WASM TimescaleDB (usage/tests/timescaledb/).
"""

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
        return f"date_bin(INTERVAL '{int(self.step.total_seconds())} seconds', bucket, TIMESTAMPTZ '{ORIGIN.isoformat()}')"

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


def series_sql(range_: Range, per_account: bool = True) -> str:
    account = "account_id = %(account)s AND " if per_account else ""
    return f"""
        SELECT {range_.bucket_sql()} AS t, endpoint,
               sum(requests)::bigint AS requests, sum(errors)::bigint AS errors, sum(words)::bigint AS words, sum(characters)::bigint AS characters
        FROM {range_.relation}
        WHERE {account}bucket >= %(start)s AND bucket < %(end)s
        GROUP BY 1, 2
        ORDER BY 1, 2
    """


# Calls allowed (not refused) since the start of the billing period, of the day and of the hour.
QUOTA_USE_SQL = """
    SELECT coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(period)s), 0)::bigint AS period,
           coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(day)s), 0)::bigint AS day,
           coalesce(sum(requests - errors) FILTER (WHERE bucket >= %(hour)s), 0)::bigint AS hour
    FROM api_calls_hourly
    WHERE account_id = %(account)s AND bucket >= least(%(period)s, %(day)s)
"""


# Words per pay-as-you-go customer and finished hour since it became metered. A hand-off
# with the billing app: its customers and plans tables (billing/models.py).
METERED_WORDS_SQL = """
    SELECT h.account_id, h.bucket, sum(h.words)::bigint AS words
    FROM api_calls_hourly h
    JOIN billing_customer c ON c.user_id = h.account_id
    JOIN billing_plan p ON p.id = c.plan_id
    WHERE p.metered AND c.stripe_id <> '' AND h.bucket < %(finished)s AND h.bucket >= %(since)s
      AND h.bucket >= date_trunc('hour', c.metered_since)
    GROUP BY h.account_id, h.bucket
    HAVING sum(h.words) > 0
"""


def totals_sql(relation: str, by: str, limit: int | None = None) -> str:
    """Calls, refusals, words and characters per account or endpoint over a window, busiest first."""
    return f"""
        SELECT {by}, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
               sum(words)::bigint AS words, sum(characters)::bigint AS characters
        FROM {relation}
        WHERE bucket >= %(start)s AND bucket < %(end)s
        GROUP BY {by}
        ORDER BY requests DESC, {by}
        {f"LIMIT {limit}" if limit else ""}
    """


def fetch(sql: str, params: dict) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
