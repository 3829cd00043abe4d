"""Usage events: an in-memory buffer on the request path, a background flusher behind it.

An event is a UsageEvent (a tuple of api_calls' columns). Its text fields are
made storable where the event is made (`storable()`). `record()` is one deque append: it never blocks
and never fails. The flusher wakes every USAGE_FLUSH_SECONDS (or as soon as
USAGE_FLUSH_BATCH events wait) and COPYs them into api_calls; a batch holding
a request id already stored (retried after an unclear failure) goes through a
staging table that skips those ids, so it counts once. Then it merges the
quantities the model services reported (usage/endpoints.py) into their events.

While the database is down the flusher retries with backoff, keeps at most
USAGE_MEMORY_LIMIT events in memory and appends the rest to a journal in
USAGE_JOURNAL_DIR, replayed once the database is back (by this or the next
process). Each journal file names the database it was meant for (the
`usage_database` row); a file meant for another database is kept and
reported, never replayed here. `stop()` (at exit, SIGTERM included) flushes
what is left or journals it. A hard crash (SIGKILL, power loss) loses what was
in memory: at most one flush interval of calls. A journal file it was writing
(still `.partial` ABANDONED_SECONDS later) is replayed as far as it got.

No event can hold the others back: a batch the database refuses for its data
(not for being down) is split in halves until each refused event stands alone;
it is set aside in `usage_deadletter` with the error, logged, and counted by
`manage.py usage_status`.
"""

import atexit
import collections
import itertools
import json
import logging
import multiprocessing.util
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction

log = logging.getLogger(__name__)


class UsageEvent(NamedTuple):
    """One API call as recorded: api_calls' columns, in order."""

    time: float  # Unix timestamp
    account: int  # the organization whose token it was (api_calls.account_id)
    token: int | None
    endpoint: str
    method: str
    status: int  # 200, or 429 when refused
    request_id: str  # X-Request-Id: the model service reports the call's quantities by it
    unchecked: bool  # let through unchecked while the counters were down


COLUMNS = "time, account_id, token_id, endpoint, method, status, request_id, unchecked"
COLUMN_TYPES = ["timestamptz", "int8", "int8", "text", "text", "int2", "text", "bool"]
COPY_CALLS = f"COPY api_calls ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
# The slower way, for a batch holding an id already stored: through a staging table, skipping those.
STAGING = """
CREATE TEMP TABLE IF NOT EXISTS api_calls_staging (LIKE api_calls INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
COPY_STAGING = f"COPY api_calls_staging ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
INSERT_STAGED = f"INSERT INTO api_calls ({COLUMNS}) SELECT {COLUMNS} FROM api_calls_staging ON CONFLICT DO NOTHING"
# A hand-off to the accounts app's table: each token's last call of the batch.
TOKENS_LAST_USED = """
UPDATE accounts_apitoken AS token SET last_used = to_timestamp(used.last)
FROM unnest(%s::bigint[], %s::float8[]) AS used (token_id, last)
WHERE token.id = used.token_id AND (token.last_used IS NULL OR token.last_used < to_timestamp(used.last))
"""
# Quantities reported for calls already stored, then those reported for a call that never reached
# the store. The constant lower bound on time lets TimescaleDB skip old chunks (a bound inside the
# join condition cannot); the delete joins on the merged ids (`IN (SELECT ...)` beside an OR is
# checked row by row against them all: 35 s for 20,000 reports).
MERGE_QUANTITIES = """
WITH merged AS (
    UPDATE api_calls AS call SET words = quantity.words, characters = quantity.characters
    FROM usage_quantity AS quantity
    WHERE call.request_id = quantity.request_id AND call.time > quantity.received - INTERVAL '1 day'
      AND call.time > (SELECT min(received) FROM usage_quantity) - INTERVAL '1 day'
      AND EXISTS (SELECT FROM usage_quantity)  -- else PostgreSQL still reads api_calls through
    RETURNING quantity.request_id
)
DELETE FROM usage_quantity AS quantity USING merged WHERE quantity.request_id = merged.request_id;
DELETE FROM usage_quantity WHERE received < now() - INTERVAL '7 days'
"""
MAX_BACKOFF = 30.0
ABANDONED_SECONDS = 60.0  # a journal file written in ms and still .partial after this: its writer died
# Refused for what it holds, not because the database is unreachable: splitting the batch isolates the event.
# (psycopg raises COPY's errors itself; Django wraps the others, keeping psycopg's as the cause.)
DATA_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError, ValueError, TypeError, OverflowError)
# What each field of an event must be (COLUMNS, in order), and the bounds of its numbers:
# the epoch (NaN and years past 2286 refused), bigint, bigint, smallint.
FIELD_TYPES = (float | int, int, int | None, str, str, int, str, bool)
LIMITS = {0: 1e10, 1: 2**63, 2: 2**63, 5: 2**15}


def storable(text: str, limit: int) -> str:
    """`text` as PostgreSQL stores it: no NUL, valid UTF-8 (lone surrogates replaced), at most `limit` characters."""
    text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode()
    return text[:limit]


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, DATA_ERRORS) or isinstance(error.__cause__, DATA_ERRORS)


def database_id() -> str:
    """This database's own identity, made by its migration: journals name it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text FROM usage_database")
        return cursor.fetchone()[0]


class UsageRecorder:
    def __init__(self, journal_dir: Path | None = None, memory_limit: int | None = None, batch_size: int | None = None):
        self._events = collections.deque()
        self._failed: list[tuple] = []  # a batch whose write failed, retried first
        self.journal_dir = journal_dir or settings.USAGE_JOURNAL_DIR
        self.memory_limit = memory_limit or settings.USAGE_MEMORY_LIMIT
        self.batch_size = batch_size or settings.USAGE_FLUSH_BATCH
        self._database: str | None = None  # known once the database has answered
        self._reported: set[Path] = set()  # foreign journals already logged
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._finalizer: multiprocessing.util.Finalize | None = None
        self._lock = threading.Lock()  # one flush at a time
        self._backoff = 0.0
        self._journal_numbers = itertools.count()

    # The request path.

    def record(self, event: tuple) -> None:
        self._events.append(event)
        if len(self._events) >= self.batch_size and not self._wake.is_set():  # set() takes a lock: once will do
            self._wake.set()

    def record_many(self, events: list[tuple]) -> None:
        """Events recorded by another process, in their order (usage/flusher.py). Those beyond
        USAGE_MEMORY_LIMIT are journaled at once, with a batch more so that files are few: while
        the database is slow rather than down, no failed flush would journal them."""
        self._events.extend(events)
        if len(self._events) >= self.batch_size:
            self._wake.set()
        if len(self._events) > self.memory_limit:
            taken = self.take(len(self._events) - self.memory_limit + self.batch_size)
            if not self._journal(taken):
                self.give_back(taken)

    def give_back(self, events: list[tuple]) -> None:
        """Events taken and not written after all (usage/flusher.py), first in line again."""
        self._events.extendleft(reversed(events))

    # The flusher.

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="usage-flusher", daemon=True)
            self._thread.start()
            atexit.register(self.stop)
            # Worker processes made by multiprocessing (granian's) end with os._exit(), skipping
            # atexit; multiprocessing runs its own finalizers first.
            self._finalizer = multiprocessing.util.Finalize(self, self.stop, exitpriority=100)

    def stop(self) -> None:
        """Flush everything, or journal what cannot be written, from the flusher's own connection."""
        atexit.unregister(self.stop)
        if self._finalizer is not None:
            self._finalizer.cancel()
            self._finalizer = None
        if self._thread is None:
            self._flush_or_journal()
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(max(settings.USAGE_FLUSH_SECONDS, self._backoff))
                self._wake.clear()
                if self._stopping.is_set():
                    break  # what is left is written once, below
                try:
                    self.flush()
                except Exception:  # never let the thread die: events would pile up unwritten
                    log.exception("Usage flush failed unexpectedly")
                    self._backoff = MAX_BACKOFF
                    self.spill_excess()
            self._flush_or_journal()
        finally:
            connection.close()

    def _flush_or_journal(self) -> None:
        """Write what waits; journal what cannot be written, and what arrived during the flush."""
        if not self.pending and not self.journal_files():
            return  # nothing to write: a database that is down would only hold the exit up
        try:
            self.flush()
        except Exception:
            log.exception("Usage flush failed unexpectedly at stop")
        if self.pending:
            self._spill(self.pending)

    def flush(self) -> bool:
        """Write the journal and every buffered event; False if the database refused."""
        with self._lock:
            try:
                self._known_database()
                self._replay_journal()
                waiting = len(self._events)  # not those arriving meanwhile: under load they never run out
                while self._failed or waiting > 0:
                    if not self._failed:
                        self._failed = self.take(min(waiting, self.batch_size))
                        if not self._failed:  # taken meanwhile (drain)
                            break
                        waiting -= len(self._failed)
                    self._store(self._failed)
                    self._failed = []
                with connection.cursor() as cursor:
                    cursor.execute(MERGE_QUANTITIES)
            except (DatabaseError, psycopg.Error):  # COPY's errors come unwrapped by Django
                self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
                log.warning("Usage flush failed; %d events pending, retrying in %.0f s", self.pending, self._backoff)
                connection.close()
                self.spill_excess()
                return False
            self._backoff = 0.0
            return True

    @property
    def pending(self) -> int:
        return len(self._failed) + len(self._events)

    def drain(self) -> list[tuple]:
        """Take every buffered event (oldest first), leaving them to the caller."""
        return self.take(len(self._events))

    def spill_excess(self) -> None:
        """Journal the oldest events beyond USAGE_MEMORY_LIMIT."""
        if self.pending > self.memory_limit:
            self._spill(self.pending - self.memory_limit)

    def take(self, count: int) -> list[tuple]:
        """Take up to `count` buffered events (oldest first), leaving them to the caller."""
        events = []
        for _ in range(count):
            try:
                events.append(self._events.popleft())
            except IndexError:
                break
        return events

    def _store(self, events: list) -> None:
        """Write the events. If the database refuses the batch for its data, set aside the events
        it would refuse and write the rest: those Python can tell (a wrong shape, type or range,
        NUL, invalid UTF-8) at once, any others by splitting the batch until each stands alone."""
        try:
            self._write(events)
        except Exception as error:
            if not is_data_error(error):
                raise
            refused = {index: reason for index, event in enumerate(events) if (reason := refusal(event))}
            bury([(events[index], reason) for index, reason in refused.items()])
            self._split([event for index, event in enumerate(events) if index not in refused])

    def _split(self, events: list) -> None:
        try:
            self._write(events)
        except Exception as error:
            if not is_data_error(error):
                raise
            if len(events) == 1:
                bury([(events[0], f"{type(error).__name__}: {error}")])
            elif events:
                self._split(events[: len(events) // 2])
                self._split(events[len(events) // 2 :])

    @staticmethod
    def _write(events: list[tuple]) -> None:
        """Straight into api_calls with COPY (half PostgreSQL's work of the staging table's way), or,
        if an id is already stored (a batch retried after a failure whose outcome was unclear, a
        journal replayed twice), through the staging table, skipping the ids already stored."""
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                copy_events(cursor, COPY_CALLS, events)
                cursor.execute(TOKENS_LAST_USED, last_used(events))
        except psycopg.errors.UniqueViolation:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(STAGING)
                copy_events(cursor, COPY_STAGING, events)
                cursor.execute(INSERT_STAGED)
                cursor.execute(TOKENS_LAST_USED, last_used(events))

    # The journal: files of JSON lines, a header naming the database, then one event a line.

    def _spill(self, count: int) -> None:
        """Move the oldest `count` pending events to a new journal file (kept in memory if it cannot be written)."""
        from_failed = self._failed[:count]
        events = from_failed + self.take(count - len(from_failed))
        kept = [] if self._journal(events) else events
        self._failed = kept + self._failed[len(from_failed) :]

    def _journal(self, events: list[tuple]) -> bool:
        """Write the events to a new journal file; False if it cannot be written."""
        if not events:
            return True
        # Unique though two threads journal at once (the flusher's and, in usage/flusher.py, the reader).
        path = self.journal_dir / f"{time.time():.6f}-{os.getpid()}-{next(self._journal_numbers)}.jsonl"
        partial = path.with_suffix(".partial")
        header = {"database": self._database, "target": database_target()}
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            with partial.open("w") as journal:
                journal.write(json.dumps(header) + "\n")
                journal.writelines(json.dumps(event) + "\n" for event in events)
                journal.flush()
                os.fsync(journal.fileno())
            partial.rename(path)  # a journal file is whole or absent
        except OSError:
            log.exception("Usage: cannot journal %d events; they stay in memory", len(events))
            return False
        log.warning("Usage: %d events journaled to %s", len(events), path)
        return True

    def _replay_journal(self) -> None:
        for path in self.journal_files():
            try:
                with path.open(errors="replace") as journal:  # a damaged line is set aside, not fatal
                    header, lines = read_header(journal), journal.readlines()
            except FileNotFoundError:
                continue  # another process replayed it meanwhile
            if path.suffix == ".partial" and lines and not lines[-1].endswith("\n"):
                lines.pop()  # cut short by its writer's death: the lines before it are whole
            if not self._owns(header):
                if path.suffix == ".partial" and not lines:  # cut short in its header: it holds no event
                    path.unlink(missing_ok=True)
                    continue
                if path not in self._reported:
                    self._reported.add(path)
                    log.error("Usage: journal %s is meant for another database (%s); kept, not replayed", path, header)
                continue
            for start in range(0, len(lines), self.batch_size):
                self._store([parse_event(line) for line in lines[start : start + self.batch_size]])
            path.unlink(missing_ok=True)  # another process may have replayed it too: ids dedupe
            log.info("Usage: replayed %d journaled events from %s", len(lines), path)

    def _owns(self, header: dict | None) -> bool:
        """A journal is replayed only into the database it was written for (by its target, if it could not say)."""
        if header is None:
            return False
        if header.get("database") is not None:
            return header["database"] == self._database
        return header.get("target") == database_target()

    def _known_database(self) -> str:
        """This database's id, asked once (journals are replayed only into their own database)."""
        if self._database is None:
            self._database = database_id()
        return self._database

    def journal_files(self) -> list[Path]:
        """The journal files, and those left .partial by a writer that died (replayed as far as they got)."""
        if not self.journal_dir.is_dir():
            return []
        abandoned = time.time() - ABANDONED_SECONDS
        partial = [path for path in self.journal_dir.glob("*.partial") if modified_before(path, abandoned)]
        return sorted([*self.journal_dir.glob("*.jsonl"), *partial])

    def foreign_journals(self) -> list[tuple[Path, dict | None]]:
        """Journal files meant for another database (or unmarked), with their headers: kept, never replayed here."""
        self._known_database()
        foreign = []
        for path in self.journal_files():
            with path.open() as journal:
                header = read_header(journal)
            if not self._owns(header):
                foreign.append((path, header))
        return foreign


class EpochDumper(psycopg.adapt.Dumper):
    """A Unix timestamp (an event's time) as a binary timestamptz: microseconds since 2000-01-01 UTC."""

    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["timestamptz"].oid

    def dump(self, epoch: float) -> bytes:
        return round((epoch - 946_684_800) * 1_000_000).to_bytes(8, "big", signed=True)  # OverflowError: a data error


def copy_events(cursor, statement: str, events: list[tuple]) -> None:
    cursor.adapters.register_dumper(float, EpochDumper)  # this cursor's only: its timestamptz columns take epochs
    with cursor.copy(statement) as copy:
        copy.set_types(COLUMN_TYPES)
        for event in events:
            copy.write_row(event)


def last_used(events: list[tuple]) -> tuple[list[int], list[float]]:
    """Each token's last call in these events, as two arrays (ids, times)."""
    last: dict[int, float] = {}
    for time_, _, token, *_ in events:
        if token is not None and time_ > last.get(token, 0):
            last[token] = time_
    return list(last), list(last.values())


def database_target() -> str:
    """Where the settings point, for a journal written before the database ever answered."""
    db = settings.DATABASES["default"]
    return f"{db.get('HOST') or 'local'}:{db.get('PORT') or 5432}/{db['NAME']}"


def modified_before(path: Path, instant: float) -> bool:
    try:
        return path.stat().st_mtime < instant
    except FileNotFoundError:  # renamed or replayed meanwhile
        return False


def read_header(journal) -> dict | None:
    """The journal's header line; None for a file without one (written before journals named their database)."""
    try:
        header = json.loads(journal.readline())
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def parse_event(line: str) -> tuple:
    """A journaled event; a line that is not one becomes a one-field row, refused and set aside like any bad event."""
    try:
        event = json.loads(line)
    except ValueError:
        return (line,)
    return tuple(event) if isinstance(event, list) else (event,)


def refusal(event) -> str | None:
    """Why PostgreSQL would refuse this event, as far as Python can tell; None if it looks storable."""
    if not isinstance(event, tuple) or len(event) != len(FIELD_TYPES):
        return f"not an event of {len(FIELD_TYPES)} fields"
    for position, (value, kind) in enumerate(zip(event, FIELD_TYPES)):
        if not isinstance(value, kind):
            return f"field {position}: {type(value).__name__} where {kind} belongs"
        if position in LIMITS and value is not None and not -LIMITS[position] <= value < LIMITS[position]:
            return f"field {position}: {value} is out of range"
        if isinstance(value, str) and value != storable(value, len(value)):
            return f"field {position}: NUL or invalid UTF-8"
    return None


def bury(refused: list[tuple[object, str]]) -> None:
    """Set events the database refuses aside, with the reasons, where staff can see them."""
    if not refused:
        return
    for event, reason in refused:
        log.error("Usage: event refused by the database, kept as a dead letter: %r (%s)", event, reason)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO usage_deadletter (failed_at, event, error) VALUES (now(), %s, %s)",
            [(json.dumps(event, default=repr), storable(reason, 2000)) for event, reason in refused],
        )


recorder = UsageRecorder()
