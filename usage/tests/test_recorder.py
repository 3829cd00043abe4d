"""Lossless ingest: every recorded event lands once, through retries, outages and restarts."""

import itertools
import json
import os
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import ApiToken
from tests.servers import wait_for
from usage.models import ApiCall, DailyUsage, DeadLetter, HourlyUsage, Quantity
from usage.recorder import UsageRecorder, database_id, database_target

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def event(i: int, account: int = 1, token: int | None = None, status: int = 200, every: float = 0.5) -> tuple:
    return (
        T0 + i * every,
        account,
        token,
        f"/v1/en/{'entities' if i % 3 else 'summarization'}",
        "POST",
        status,
        f"req-{i}",
        False,
    )


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


def test_a_flush_under_steady_traffic_writes_what_was_waiting_then_merges_quantities(recorder):
    """Calls keep coming while a flush writes: it must not chase them in batch after batch, never
    getting to the quantities (the words would go unbilled for as long as the traffic lasts)."""
    for i in range(250):
        recorder.record(event(i))
    Quantity.objects.create(request_id="req-1", words=10, characters=70)
    arriving = (event(i) for i in itertools.count(250))
    writes = []

    def write_while_calls_arrive(events):
        writes.append(len(events))
        for _ in range(150 if len(writes) <= 20 else 0):  # more arrive during a write than a batch takes
            recorder.record(next(arriving))
        UsageRecorder._write(events)

    recorder._write = write_while_calls_arrive
    assert recorder.flush()
    assert writes == [100, 100, 50]  # the 250 waiting when the flush began, in batches of 100
    assert ApiCall.objects.get(request_id="req-1").words == 10 and not Quantity.objects.exists()
    assert recorder.pending == 3 * 150  # for the next flush


def test_stop_journals_the_calls_recorded_during_its_last_flush(recorder):
    for i in range(150):
        recorder.record(event(i))

    def write_while_a_call_arrives(events):
        if len(events) == 100:
            recorder.record(event(150))
        UsageRecorder._write(events)

    recorder._write = write_while_a_call_arrives
    recorder.stop()
    assert ApiCall.objects.count() == 150 and recorder.pending == 0
    replayed = UsageRecorder(journal_dir=recorder.journal_dir)
    assert replayed.flush() and ApiCall.objects.count() == 151


def test_a_flush_ends_when_the_buffer_is_emptied_under_it(recorder):
    for i in range(250):
        recorder.record(event(i))
    writes = []

    def write_then_drain(events):
        writes.append(len(events))
        recorder.drain()
        UsageRecorder._write(events)

    recorder._write = write_then_drain
    assert recorder.flush() and writes == [100]


def test_a_report_whose_call_never_arrives_is_dropped_after_seven_days(recorder):
    Quantity.objects.create(request_id="req-lost", words=1, characters=1)
    Quantity.objects.create(request_id="req-late", words=1, characters=1)
    Quantity.objects.filter(request_id="req-lost").update(received=timezone.now() - timedelta(days=8))
    assert recorder.flush()
    assert list(Quantity.objects.values_list("request_id", flat=True)) == ["req-late"]


def test_the_stores_connections_do_not_compile_queries(db):
    """PostgreSQL's JIT took 100-300 ms to compile the flusher's merge, which then ran in 2."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


def test_flushing_records_when_each_token_was_last_used(recorder, customer):
    token = ApiToken.issue(customer.default_organization(), "t")[0]
    recorder.record(event(1, account=customer.default_organization().pk, token=token.pk))
    recorder.record(event(9, account=customer.default_organization().pk, token=token.pk))
    assert recorder.flush()
    token.refresh_from_db()
    assert token.last_used.timestamp() == T0 + 4.5


@pytest.mark.django_db(transaction=True)
def test_n_events_through_an_outage_and_a_restart_give_exactly_n(tmp_path, usage_store, settings):
    """The flusher thread loses its database, journals what memory cannot hold, is restarted, and catches up."""
    settings.USAGE_FLUSH_SECONDS = 0.05
    journal = tmp_path / "journal"
    database = connection.settings_dict["NAME"]
    admin = psycopg.connect(
        dbname="postgres",
        **{k: v for k, v in connection.get_connection_params().items() if k in ("user", "host", "port", "password")},
        autocommit=True,
    )
    words = {f"req-{i}": i % 7 for i in range(6000)}
    Quantity.objects.bulk_create(Quantity(request_id=r, words=w, characters=2 * w) for r, w in words.items())

    first = UsageRecorder(journal_dir=journal, memory_limit=1000, batch_size=500)
    first.start()
    for i in range(2000):
        first.record(event(i))
    assert wait_for(lambda: first.pending == 0 and ApiCall.objects.count() == 2000, seconds=10)

    my_pid = connection.cursor().connection.info.backend_pid
    admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [database, my_pid]
    )
    try:
        for i in range(2000, 5000):
            first.record(event(i))
        # Memory is bounded: the excess goes to disk once a flush has failed (each waits for the
        # connection pool's timeout first).
        assert wait_for(lambda: list(journal.glob("*.jsonl")) and first.pending <= 1000, seconds=60)
        first.stop()  # the process ends while the database is still down: nothing may stay in memory
        assert first.pending == 0
        assert sum(len(path.read_text().splitlines()) - 1 for path in journal.glob("*.jsonl")) == 3000  # less headers
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


@pytest.mark.django_db(transaction=True)
def test_while_a_write_is_slow_memory_stays_bounded_and_every_event_lands_once(tmp_path, usage_store, settings):
    """The flusher process's recorder (usage/flusher.py) keeps taking events while its write waits on a lock:
    beyond the memory limit they go to the journal, and are written once the lock is gone."""
    settings.USAGE_FLUSH_SECONDS = 0.05
    journal = tmp_path / "journal"
    recorder = UsageRecorder(journal_dir=journal, memory_limit=1000, batch_size=200)
    recorder.start()
    lock = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        lock.execute("BEGIN; LOCK TABLE api_calls IN ACCESS EXCLUSIVE MODE")
        recorder.record_many([event(i) for i in range(200)])
        waiting = "SELECT count(*) FROM pg_locks WHERE relation = 'api_calls'::regclass AND NOT granted"
        assert wait_for(lambda: lock.execute(waiting).fetchone()[0] == 1, seconds=10)  # the write waits
        for start in range(200, 5000, 100):  # frames from the server, as usage/flusher.py reads them
            recorder.record_many([event(i) for i in range(start, start + 100)])
            assert len(recorder._events) <= 1000
        assert sum(len(path.read_text().splitlines()) - 1 for path in journal.glob("*.jsonl")) >= 3800
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert wait_for(lambda: ApiCall.objects.count() == 5000 and not list(journal.glob("*")), seconds=20)
    recorder.stop()
    assert ApiCall.objects.values("request_id").distinct().count() == 5000


def test_events_that_cannot_be_journaled_stay_in_memory(tmp_path, usage_store):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the journal directory cannot be created here
    recorder = UsageRecorder(journal_dir=blocked / "journal", batch_size=10)
    for i in range(25):
        recorder.record(event(i))
    recorder._spill(20)
    assert recorder.pending == 25
    assert recorder.flush() and ApiCall.objects.count() == 25


# Hostile events: none may hold the others back.

NUL = "\x00"
POISON = [
    (T0, 1, None, f"/v1/en/entities{NUL}", "POST", 200, "bad-nul", False),  # PostgreSQL refuses NUL in text
    (T0, 1, None, "/v1/\udcff", "POST", 200, "bad-surrogate", False),  # not encodable as UTF-8
    (T0, None, None, "/v1/x", "POST", 200, "bad-account", False),  # NOT NULL
    (T0, 2**70, None, "/v1/x", "POST", 200, "bad-bigint", False),  # out of range
    (T0, "one", None, "/v1/x", "POST", 200, "bad-type", False),
    (T0, 1, None, "/v1/x", "POST", 200),  # too few fields
    ("not json at all",),  # what a damaged journal line becomes
    (1e300, 1, None, "/v1/x", "POST", 200, "bad-time", False),  # timestamp out of range
    (T0, 1, None, "/v1/x", "POST", 200, "bad-shape", "yes"),
]


def mixed_with_poison(count: int) -> list[tuple]:
    events = [event(i, every=0.01) for i in range(count)]
    for position, poison in enumerate(POISON * 8):
        events.insert(1 + position * count // 72, poison)
    return events


def dead_letters() -> list[str]:
    return list(DeadLetter.objects.values_list("event", flat=True))


@pytest.mark.django_db(transaction=True)
def test_poison_events_are_set_aside_and_every_good_one_is_stored_within_two_flush_intervals(
    tmp_path, usage_store, settings
):
    settings.USAGE_FLUSH_SECONDS = 1.0
    recorder = UsageRecorder(journal_dir=tmp_path / "journal")
    recorder.start()
    try:
        for e in mixed_with_poison(10_000):
            recorder.record(e)
        assert wait_for(lambda: ApiCall.objects.count() == 10_000, seconds=2 * settings.USAGE_FLUSH_SECONDS)
    finally:
        recorder.stop()
    assert totals()["requests"] == 10_000
    assert len(dead_letters()) == 72
    assert DeadLetter.objects.filter(event__contains="bad-nul", error__contains="NUL").count() == 8
    assert DeadLetter.objects.filter(event__contains="bad-time", error__contains="out of range").count() == 8


@pytest.mark.django_db(transaction=True)
def test_an_event_refused_for_a_reason_python_cannot_foresee_is_isolated_by_splitting_the_batch(tmp_path, usage_store):
    with connection.cursor() as cursor:  # say, a rule an operator added to the table
        cursor.execute("ALTER TABLE api_calls ADD CONSTRAINT no_evil CHECK (endpoint <> '/v1/evil')")
    try:
        recorder = UsageRecorder(journal_dir=tmp_path)
        for i in range(5000):
            recorder.record(event(i) if i != 1234 else (T0, 1, None, "/v1/evil", "GET", 200, "evil", False))
        assert recorder.flush()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE api_calls DROP CONSTRAINT no_evil")
    assert ApiCall.objects.count() == 4999
    assert "no_evil" in DeadLetter.objects.get().error  # the constraint that refused it


def test_poison_in_a_journal_is_set_aside_and_the_good_events_replayed(tmp_path, usage_store):
    journal = tmp_path / "journal"
    writer = UsageRecorder(journal_dir=journal)
    writer._database = database_id()
    for e in mixed_with_poison(10_000):
        writer.record(e)
    writer._spill(writer.pending)
    with next(journal.glob("*.jsonl")).open("a") as damaged:
        damaged.write("{not json\n")

    replayer = UsageRecorder(journal_dir=journal)  # the next process
    assert replayer.flush()
    assert ApiCall.objects.count() == 10_000 and totals()["requests"] == 10_000
    assert len(dead_letters()) == 73 and DeadLetter.objects.filter(event__contains="{not json").exists()
    assert not list(journal.iterdir())


def test_a_journal_cut_short_by_its_writers_death_is_replayed_as_far_as_it_got(tmp_path, usage_store):
    journal = tmp_path / "journal"
    journal.mkdir()
    header = json.dumps({"database": database_id(), "target": database_target()})
    lines = [header, *(json.dumps(event(i)) for i in range(3)), json.dumps(event(3))[:20]]  # killed mid-line
    abandoned = journal / "1.000000-4242-0.partial"
    abandoned.write_text("\n".join(lines))
    empty = journal / "2.000000-4242-1.partial"  # killed in its header
    empty.write_text(header[:10])
    being_written = journal / f"{time.time():.6f}-4243-0.partial"
    being_written.write_text(header + "\n" + json.dumps(event(7)) + "\n")
    for path in (abandoned, empty):
        os.utime(path, (time.time() - 120, time.time() - 120))

    assert UsageRecorder(journal_dir=journal).flush()
    assert sorted(ApiCall.objects.values_list("request_id", flat=True)) == ["req-0", "req-1", "req-2"]
    assert not DeadLetter.objects.exists()
    assert list(journal.iterdir()) == [being_written]


def test_a_journal_meant_for_another_database_is_kept_and_reported(tmp_path, usage_store):
    journal = tmp_path / "journal"
    journal.mkdir()
    foreign = journal / "1.000000-1.jsonl"
    foreign.write_text(
        json.dumps({"database": str(uuid.uuid4()), "target": database_target()}) + "\n" + json.dumps(event(1)) + "\n"
    )
    unmarked = journal / "2.000000-1.jsonl"  # written before journals named their database
    unmarked.write_text(json.dumps(event(2)) + "\n")
    recorder = UsageRecorder(journal_dir=journal)
    recorder.record(event(3))
    assert recorder.flush()
    assert list(ApiCall.objects.values_list("request_id", flat=True)) == ["req-3"]
    assert foreign.exists() and unmarked.exists()
    assert [path for path, _ in recorder.foreign_journals()] == [foreign, unmarked]


def test_a_journal_written_before_the_database_ever_answered_is_replayed_where_its_settings_point(
    tmp_path, usage_store
):
    journal = tmp_path / "journal"
    cut_off = UsageRecorder(journal_dir=journal)  # never flushed: it does not know the database's id
    cut_off.record(event(1))
    cut_off._spill(1)
    assert json.loads(next(journal.glob("*.jsonl")).open().readline()) == {
        "database": None,
        "target": database_target(),
    }
    assert UsageRecorder(journal_dir=journal).flush()
    assert ApiCall.objects.count() == 1 and not list(journal.iterdir())
