"""The usage store: TimescaleDB where the extension is available, plain PostgreSQL otherwise.

Both have the same relations (api_calls, api_calls_hourly, api_calls_daily)
and columns, built from usage/sql/; everything else reads them the same way.
"""

from pathlib import Path

from django.conf import settings
from django.db import connection

SQL_DIR = Path(__file__).parent / "sql"


def sql(name: str) -> str:
    text = (SQL_DIR / name).read_text()
    return text.replace("{{RETENTION_DAYS}}", str(settings.USAGE_RAW_RETENTION_DAYS))


def timescaledb_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return cursor.fetchone() is not None


def create(cursor) -> str:
    """Create the store's relations; returns the mode built."""
    if timescaledb_available(cursor):
        cursor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cursor.execute(sql("api_calls.sql"))
        cursor.execute(sql("timescaledb.sql"))
        return "timescaledb"
    cursor.execute(sql("api_calls.sql"))
    cursor.execute(sql("rollup.sql"))
    cursor.execute(sql("postgres.sql"))
    return "postgres"


def mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        return "timescaledb" if cursor.fetchone() else "postgres"
