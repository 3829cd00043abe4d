from datetime import timedelta
from io import StringIO
from unittest.mock import patch

from django.core.management import call_command
from django.utils import timezone

from usage.models import ApiCall, DeadLetter, HourlyUsage
from usage.recorder import UsageRecorder, recorder


def run(command: str) -> str:
    out = StringIO()
    call_command(command, stdout=out)
    return out.getvalue()


def test_usage_status_names_the_store_and_its_mechanism(db):
    output = run("usage_status")
    assert "Usage store: postgres" in output
    assert "api_calls_rollup_insert, api_calls_rollup_update" in output


def test_retention_deletes_old_raw_events_and_keeps_the_aggregates(db, tmp_path, settings):
    settings.USAGE_RAW_RETENTION_DAYS = 90
    now = timezone.now()
    recorder = UsageRecorder(journal_dir=tmp_path)
    for i, age in enumerate([1, 89, 91, 400]):
        recorder.record(((now - timedelta(days=age)).timestamp(), 1, None, "/v1/x", "GET", 200, f"r{i}", False))
    assert recorder.flush()
    assert "Deleted 2 raw events older than 90 days." in run("usage_retention")
    assert sorted(ApiCall.objects.values_list("request_id", flat=True)) == ["r0", "r1"]
    assert sum(HourlyUsage.objects.values_list("requests", flat=True)) == 4


def test_usage_status_counts_dead_letters_and_names_journals_meant_for_another_database(db, tmp_path):
    (tmp_path / "1.000000-1.jsonl").write_text('{"database": "another", "target": "elsewhere:5432/db"}\n[]\n')
    DeadLetter.objects.create(failed_at=timezone.now(), event="[]", error="DataError: ...")
    with patch.object(recorder, "journal_dir", tmp_path):
        output = run("usage_status")
    assert "dead letters (events the database refused; see admin): 1" in output
    assert f"journal meant for another database, kept, not replayed: {tmp_path / '1.000000-1.jsonl'}" in output


def test_staff_read_dead_letters_in_admin(staff_client):
    DeadLetter.objects.create(failed_at=timezone.now(), event='[1, "/v1/x"]', error="DataError: out of range")
    html = staff_client.get("/admin/usage/deadletter/").content.decode()
    assert "DataError: out of range" in html
