"""`manage.py run_schedule`: the periodic jobs, each in its own process, on time, until SIGTERM."""

import os
import re
import signal
import sys
from datetime import timedelta

from django.conf import settings
from django.core.management import get_commands

from backoffice.management.commands import run_schedule
from backoffice.management.commands.run_schedule import SCHEDULE, Job, Schedule
from tests.servers import Server, wait_for

MINUTE = 60


def test_every_scheduled_job_is_a_management_command():
    assert {job.command.split()[0] for job in SCHEDULE} <= set(get_commands())
    assert {job.command for job in SCHEDULE} >= {"sync_stripe", "report_usage", "usage_retention", "clearsessions"}


class Finished:
    """A job process that has already exited."""

    pid = 1

    def __init__(self, returncode: int):
        self.returncode = returncode

    def poll(self) -> int:
        return self.returncode


def test_each_job_runs_at_start_then_once_per_interval(monkeypatch):
    runs: dict[str, list[int]] = {"quarterly": [], "hourly": []}
    monkeypatch.setattr(run_schedule, "start", lambda job: runs[job.command].append(clock) or Finished(0))
    schedule = Schedule([Job("quarterly", timedelta(minutes=15)), Job("hourly", timedelta(hours=1))], now=0)
    for clock in range(0, 2 * 60 * MINUTE + 1, 10):  # two hours, looked at every 10 s
        schedule.run_due(clock)
    assert runs["quarterly"] == [minutes * MINUTE for minutes in range(0, 121, 15)]
    assert runs["hourly"] == [0, 60 * MINUTE, 120 * MINUTE]


def test_missed_runs_are_not_made_up_and_the_schedule_keeps_its_slots(monkeypatch):
    runs = []
    monkeypatch.setattr(run_schedule, "start", lambda job: runs.append(clock) or Finished(0))
    schedule = Schedule([Job("quarterly", timedelta(minutes=15))], now=0)
    for clock in [0, 50 * MINUTE, 55 * MINUTE, 60 * MINUTE]:  # the machine slept through three runs
        next_due = schedule.run_due(clock)
    assert runs == [0, 50 * MINUTE, 60 * MINUTE] and next_due == 75 * MINUTE


def test_a_job_still_running_is_not_started_twice(monkeypatch, caplog):
    class Running(Finished):
        def poll(self):
            return None

    runs = []
    monkeypatch.setattr(run_schedule, "start", lambda job: runs.append(clock) or Running(0))
    schedule = Schedule([Job("slow", timedelta(minutes=1))], now=0)
    for clock in [0, MINUTE, 2 * MINUTE]:
        schedule.run_due(clock)
    assert runs == [0]
    assert caplog.text.count("slow is still running: this run is skipped") == 2


# Through `manage.py run_schedule` itself, with this schedule instead of the real one.
SCHEDULER = """
import sys
from datetime import timedelta
import django
django.setup()
from django.core.management import call_command
from backoffice.management.commands.run_schedule import SCHEDULE, Job
SCHEDULE[:] = [
    Job("no_such_command", timedelta(seconds=1)),
    Job("check", timedelta(seconds=1)),
    Job("shell -c 'import time; time.sleep(600)'", timedelta(hours=1)),
]
call_command("run_schedule")
"""


def test_a_failing_job_holds_no_other_back_and_sigterm_stops_the_jobs_and_the_scheduler():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backoffice.settings", "PYTHONUNBUFFERED": "1"}
    scheduler = Server(
        [sys.executable, "-c", SCHEDULER],
        cwd=settings.BASE_DIR,
        env=env,
    )
    output = scheduler.output
    try:
        assert wait_for(
            lambda: (
                output().count("no_such_command finished: exit status 1") >= 2
                and output().count("check finished: exit status 0") >= 2
            ),
            90,
        ), output()
        sleeper = int(re.search(r"shell -c 'import time; time.sleep\(600\)' started \(pid (\d+)\)", output()).group(1))
        assert is_running(sleeper)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=30)
        output.complete()
    assert scheduler.returncode == 0, output()
    assert output().rstrip().endswith("Scheduler stopped"), output()
    assert "Traceback" not in output(), output()
    assert not is_running(sleeper), "a job outlived the scheduler"


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
