"""`manage.py run_schedule`: the periodic jobs, for deployments without cron (the stack's scheduler service).

Each job runs once at start, then once per interval, as its own `manage.py` process:
a job that fails, crashes or hangs is logged and holds no other back, and a job still
running when it is due again is not started twice. SIGTERM (or Ctrl-C) stops the loop
and the jobs running; every job is safe to interrupt and to run again.
"""

import logging
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    command: str  # a manage.py command line
    every: timedelta


SCHEDULE = [
    Job("sync_stripe", timedelta(minutes=15)),  # missed webhooks, customers created while Stripe was down
    Job("report_usage", timedelta(hours=1)),  # metered words of the finished hours
    Job("send_quota_alerts", timedelta(minutes=5)),  # e-mails at the customers' thresholds of their quotas
    Job("usage_retention", timedelta(days=1)),  # raw events past USAGE_RAW_RETENTION_DAYS (plain PostgreSQL)
    Job("clearsessions", timedelta(days=1)),  # expired sessions
]
PLAN = ", ".join(f"{job.command} every {job.every.total_seconds() / 60:g} min" for job in SCHEDULE)


def start(job: Job) -> subprocess.Popen:
    # Its own session: Ctrl-C reaches the scheduler only, which then stops its jobs itself.
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py"), *shlex.split(job.command)]
    return subprocess.Popen(manage, start_new_session=True)


class Schedule:
    """When each job is due next, and the processes of those running."""

    def __init__(self, jobs: list[Job], now: float):
        self.jobs = jobs
        self.due = dict.fromkeys(jobs, now)
        self.running: dict[Job, tuple[subprocess.Popen, float]] = {}

    def run_due(self, now: float) -> float:
        """Log the jobs that finished, start those due; returns when the next one is due."""
        for job, (process, started) in list(self.running.items()):
            if process.poll() is not None:
                del self.running[job]
                level = logging.INFO if process.returncode == 0 else logging.ERROR
                log.log(
                    level, "%s finished: exit status %s after %.0f s", job.command, process.returncode, now - started
                )
        for job in self.jobs:
            if now < self.due[job]:
                continue
            if job in self.running:
                log.warning("%s is still running: this run is skipped", job.command)
            else:
                try:
                    self.running[job] = (process := start(job), now)
                    log.info("%s started (pid %s)", job.command, process.pid)
                except OSError:
                    log.exception("%s could not be started", job.command)
            every = job.every.total_seconds()
            self.due[job] += every * (1 + (now - self.due[job]) // every)  # the next slot after now, none made up
        return min(self.due.values())

    def stop(self) -> None:
        for job, (process, _) in self.running.items():
            log.info("%s stopped (pid %s)", job.command, process.pid)
            process.terminate()
        for process, _ in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Command(BaseCommand):
    help = (
        f"Run the periodic jobs until SIGTERM ({PLAN}); each once at start, then once per interval, in its own process."
    )

    def handle(self, *args, **options):
        self.stopping = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        schedule = Schedule(SCHEDULE, time.monotonic())
        log.info("Scheduler started: %s", PLAN)
        while not self.stopping:
            next_due = schedule.run_due(time.monotonic())
            time.sleep(max(0, min(next_due - time.monotonic(), 1)))  # at least once a second: finished jobs are logged
        schedule.stop()
        log.info("Scheduler stopped")

    def stop(self, *_) -> None:
        self.stopping = True
