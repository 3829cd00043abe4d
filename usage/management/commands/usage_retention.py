from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from usage import store

BATCH = 50_000


class Command(BaseCommand):
    help = (
        "Plain PostgreSQL: delete raw usage events older than USAGE_RAW_RETENTION_DAYS (run daily from cron). "
        "The hourly and daily aggregates keep their history. On TimescaleDB a retention policy does this."
    )

    def handle(self, *args, **options):
        if store.mode() == "timescaledb":
            self.stdout.write("TimescaleDB: the retention policy drops old chunks; nothing to do.")
            return
        deleted = 0
        with connection.cursor() as cursor:
            while True:
                cursor.execute(
                    "DELETE FROM api_calls WHERE ctid IN (SELECT ctid FROM api_calls WHERE time < now() - %s * INTERVAL '1 day' LIMIT %s)",
                    [settings.USAGE_RAW_RETENTION_DAYS, BATCH],
                )
                deleted += cursor.rowcount
                if cursor.rowcount < BATCH:
                    break
        self.stdout.write(f"Deleted {deleted:,} raw events older than {settings.USAGE_RAW_RETENTION_DAYS} days.")
