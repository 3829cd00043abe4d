"""Lossless ingest: every recorded event lands once, through retries, outages and restarts."""


import psycopg
import pytest
from django.db import connection

from accounts.models import ApiToken
from tests.servers import wait_for
from usage.models import ApiCall, DailyUsage, HourlyUsage, Quantity
from usage.recorder import UsageRecorder

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def event(i: int, account: int = 1, token: int | None = None, status: int = 200, every: float = 0.5) -> tuple:
    return (T0 + i * every, account, token, f"/v1/en/{'entities' if i % 3 else 'summarization'}", "POST", status, f"req-{i}")


def totals(model=HourlyUsage, **filters) -> dict:
    rows = model.objects.filter(**filters)
    return {field: sum(getattr(row, field) for row in rows) for field in ("requests", "errors", "words", "characters")}


@pytest.fixture
def recorder(tmp_path, usage_store) -> UsageRecorder:
    return UsageRecorder(journal_dir=tmp_path / "journal", batch_size=100)


def test_recorded_events_are_stored_and_rolled_up_hourly_and_daily(recorder):
    events = [event(i, status=429 if i % 10 == 0 else 200, every=15) for i in range(1000)]  # 08:00 to 12:09
    for e in events:
        recorder.record(e)
    assert recorder.flush()
    assert ApiCall.objects.count() == 1000
    assert totals() == totals(DailyUsage) == {"requests": 1000, "errors": 100, "words": 0, "characters": 0}
    hours = HourlyUsage.objects.filter(endpoint="/v1/en/summarization").order_by("bucket")
    summaries = [e[0] // 3600 for e in events if e[3] == "/v1/en/summarization"]
    assert [(row.bucket.timestamp() // 3600, row.requests) for row in hours] == [
        (hour, summaries.count(hour)) for hour in sorted(set(summaries))
    ]
    assert len(hours) == 5


def test_a_batch_written_twice_counts_once(recorder):
    events = [event(i) for i in range(300)]
    for e in events + events[100:200]:
        recorder.record(e)
    assert recorder.flush()
    assert totals()["requests"] == 300 and ApiCall.objects.count() == 300


def test_quantities_reported_before_or_after_the_event_are_merged_exactly(recorder):
    Quantity.objects.create(request_id="req-1", words=10, characters=70)  # the model service was faster
    for i in range(4):
        recorder.record(event(i))
    assert recorder.flush()
    Quantity.objects.create(request_id="req-2", words=5, characters=30)  # ... or slower
    Quantity.objects.create(request_id="req-unknown", words=99, characters=99)  # its event is still in transit
    assert recorder.flush()
    assert totals() == totals(DailyUsage) == {"requests": 4, "errors": 0, "words": 15, "characters": 100}
    assert list(Quantity.objects.values_list("request_id", flat=True)) == ["req-unknown"]


def test_flushing_records_when_each_token_was_last_used(recorder, customer):
    token = ApiToken.issue(customer, "t")[0]
    recorder.record(event(1, account=customer.pk, token=token.pk))
    recorder.record(event(9, account=customer.pk, token=token.pk))
    assert recorder.flush()
    token.refresh_from_db()
    assert token.last_used.timestamp() == T0 + 4.5


@pytest.mark.django_db(transaction=True)
def test_n_events_through_an_outage_and_a_restart_give_exactly_n(tmp_path, usage_store, settings):
    """The flusher thread loses its database, journals what memory cannot hold, is restarted, and catches up."""
    settings.USAGE_FLUSH_SECONDS = 0.05
    journal = tmp_path / "journal"
    database = connection.settings_dict["NAME"]
    admin = psycopg.connect(dbname="postgres", **{k: v for k, v in connection.get_connection_params().items()
                                                  if k in ("user", "host", "port", "password")}, autocommit=True)
    words = {f"req-{i}": i % 7 for i in range(6000)}
    Quantity.objects.bulk_create(Quantity(request_id=r, words=w, characters=2 * w) for r, w in words.items())

    first = UsageRecorder(journal_dir=journal, memory_limit=1000, batch_size=500)
    first.start()
    for i in range(2000):
        first.record(event(i))
    assert wait_for(lambda: first.pending == 0 and ApiCall.objects.count() == 2000, seconds=10)

    my_pid = connection.cursor().connection.info.backend_pid
    admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [database, my_pid])
    try:
        for i in range(2000, 5000):
            first.record(event(i))
        assert wait_for(lambda: list(journal.glob("*.jsonl")), seconds=10)  # memory is bounded: the excess went to disk
        assert first.pending <= 1000
        first.stop()  # the process ends while the database is still down: nothing may stay in memory
        assert first.pending == 0
        assert sum(1 for path in journal.glob("*.jsonl") for _ in path.open()) == 3000
    finally:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    second = UsageRecorder(journal_dir=journal, memory_limit=1000, batch_size=500)  # the restarted process
    for i in range(5000, 6000):
        second.record(event(i))
    second.start()
    second.stop()
    assert not list(journal.glob("*"))
    assert ApiCall.objects.count() == 6000
    expected = {"requests": 6000, "errors": 0, "words": sum(words.values()), "characters": 2 * sum(words.values())}
    assert totals() == totals(DailyUsage) == expected


def test_events_that_cannot_be_journaled_stay_in_memory(tmp_path, usage_store):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the journal directory cannot be created here
    recorder = UsageRecorder(journal_dir=blocked / "journal", batch_size=10)
    for i in range(25):
        recorder.record(event(i))
    recorder._spill(20)
    assert recorder.pending == 25
    assert recorder.flush() and ApiCall.objects.count() == 25
