from django.core.management.base import BaseCommand
from django.db import connection

from usage import store
from usage.models import DeadLetter
from usage.queries import store_counts
from usage.recorder import recorder

TIMESCALEDB_JOBS = """
SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name, ''), j.schedule_interval::text, j.scheduled,
       coalesce(s.last_run_status, 'never run'), coalesce(s.last_successful_finish::text, '-'), coalesce(s.total_failures, 0)
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s USING (job_id)
WHERE j.proc_name LIKE 'policy_%%'
ORDER BY j.job_id
"""


class Command(BaseCommand):
    help = "Say which usage store is active (TimescaleDB or plain PostgreSQL) and the state of its policies."

    def handle(self, *args, **options):
        mode = store.mode()
        events, hourly, daily, oldest, quantities = store_counts().rows()[0].values()
        with connection.cursor() as cursor:
            self.stdout.write(f"Usage store: {mode}")
            self.stdout.write(
                f"  raw events: {events:,} (oldest {oldest or '-'}); hourly rows: {hourly:,}; daily rows: {daily:,}"
            )
            self.stdout.write(f"  quantities waiting for their event: {quantities:,}")
            self.stdout.write(
                f"  dead letters (events the database refused; see admin): {DeadLetter.objects.count():,}"
            )
            for path, header in recorder.foreign_journals():
                self.stdout.write(
                    f"  journal meant for another database, kept, not replayed: {path} {header or '(unmarked)'}"
                )
            if mode == "timescaledb":
                cursor.execute(TIMESCALEDB_JOBS)
                self.stdout.write("  policies (job, kind, relation, every, enabled, last run, last success, failures):")
                for row in cursor.fetchall():
                    self.stdout.write("    " + " | ".join(str(value) for value in row))
            else:
                cursor.execute(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'api_calls'::regclass AND NOT tgisinternal ORDER BY tgname"
                )
                triggers = [name for (name,) in cursor.fetchall()]
                self.stdout.write(f"  aggregates kept by triggers: {', '.join(triggers) or 'MISSING'}")
                self.stdout.write("  retention: run `manage.py usage_retention` daily (no TimescaleDB policy here)")
