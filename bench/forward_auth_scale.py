"""Forward-auth's cost as the business grows: 10k, 100k and 1M tokens in the database.

For each size, in this process (the code a granian worker runs), it measures:
- state: memory held by forward-auth's caches and plans (every object reachable from them,
  counted once) after start, and after 10,000 distinct tokens have each made a call (the
  working set, the same at every size);
- first decision: from a new ForwardAuth to the first answered call (plans loaded, the token
  looked up);
- per change: the refresher's time to apply one revocation (read the change feed, forget
  one credential), median of 50, and the seconds until the revoked token is refused;
- flood: 2 s of calls with made-up tokens, each new, with look-ups capped at 100 a second:
  the calls answered and the database queries made, per second;
- collector: the longest pause of Python's garbage collector while the working set warms up,
  with new objects frozen each second as serve_forward_auth does (usage/server.py), and the
  reference cycles it would have found (frozen, they would never be freed).

Run: `.venv/bin/python bench/forward_auth_scale.py` (BENCH_DATABASE_URL, default the local
`backoffice_bench`; the tokens are added once and kept; about 5 minutes the first time).
"""

import gc
import itertools
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import database  # noqa: E402

SIZES = [10_000, 100_000, 1_000_000]
WORKING_SET = 10_000
FLOOD_LOOKUPS = 100
TOKENS_PER_ACCOUNT = 2


def secret_of(i: int) -> str:
    return f"nlp_{i:08d}_" + f"{i:043d}"  # digits are in the prefix alphabet: well formed


def populate(total: int) -> None:
    """Accounts and tokens up to `total` tokens (added, never removed: sizes grow in turn)."""
    from django.db import connection

    from accounts.models import token_digest, token_hash_key

    key = token_hash_key()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM accounts_apitoken WHERE prefix LIKE 'nlp\\_0%%'")
        have = cursor.fetchone()[0]
        if have >= total:
            return
        accounts = total // TOKENS_PER_ACCOUNT
        have_accounts = len(ids_of(cursor, "accounts_organization", "name", "bench"))
        with cursor.copy(
            "COPY accounts_user (password, is_superuser, email, is_staff, is_active, date_joined, "
            "first_name, last_name) FROM STDIN"
        ) as copy:
            for account in range(have_accounts, accounts):
                copy.write_row(["!", False, f"bench{account}@example.com", False, True, "2027-01-01", "", ""])
        with cursor.copy("COPY accounts_organization (name, is_active, created) FROM STDIN") as copy:
            for account in range(have_accounts, accounts):
                copy.write_row([f"bench{account}", True, "2027-01-01"])
        ids = ids_of(cursor, "accounts_organization", "name", "bench")
        users = ids_of(cursor, "accounts_user", "email", "bench")
        with cursor.copy("COPY accounts_membership (organization_id, user_id, role, joined) FROM STDIN") as copy:
            for account in range(have_accounts, accounts):  # a member: forward-auth refuses tokens of none
                copy.write_row([ids[account], users[account], "owner", "2027-01-01"])
        columns = "organization_id, name, prefix, digest, created, allowed_endpoints, allowed_networks"
        with cursor.copy(f"COPY accounts_apitoken ({columns}) FROM STDIN") as copy:
            for i in range(have, total):
                secret = secret_of(i)
                account, digest = ids[i // TOKENS_PER_ACCOUNT], token_digest(secret, key).hex()
                copy.write_row([account, "bench", secret[:12], digest, "2027-01-01", [], []])
        cursor.execute("DELETE FROM forward_auth_change")  # the bulk load's own feed: nobody is reading it
        cursor.execute("ANALYZE accounts_user, accounts_organization, accounts_membership, accounts_apitoken")


def ids_of(cursor, table: str, column: str, stem: str) -> dict[int, int]:
    """The ids of the bench's rows of `table`, by their number (`bench12`, `bench12@example.com`: 12)."""
    cursor.execute(f"SELECT {column}, id FROM {table} WHERE {column} ~ %s", [f"^{stem}[0-9]+(@example.com)?$"])
    return {int(value[len(stem) :].partition("@")[0]): pk for value, pk in cursor.fetchall()}


def state_size(auth) -> int:
    """Bytes of every object reachable from forward-auth's plans and caches, each counted once."""
    seen, stack, total = set(), [auth.plans, auth.default_plan, auth.credentials, auth.unknown], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (tuple, list, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name))
    return total


def measure(total: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from usage.forward_auth import ForwardAuth
    from usage.limiter import MemoryCounters
    from usage.recorder import UsageRecorder
    from usage.server import TIDY_SECONDS, freeze_new_objects

    def call(auth, secret):
        return auth.answer({"HTTP_AUTHORIZATION": f"Bearer {secret}", "HTTP_X_FORWARDED_URI": "/v1/en/entities"})

    began = time.perf_counter()
    # Leases expire at once: the bench tokens' Free plan allows 2 calls in flight per account.
    auth = ForwardAuth(MemoryCounters(), fail_open=False, refresh_seconds=0, lease_ttl=1e-6, recorder=UsageRecorder())
    auth.start()
    assert call(auth, secret_of(0)).status == 200
    first_decision = time.perf_counter() - began
    at_start = state_size(auth)
    step = total // WORKING_SET
    freeze_new_objects()  # as the server does before its first call
    with collector_pauses() as pauses:
        frozen = time.perf_counter()
        for i in range(0, total, step):
            assert call(auth, secret_of(i)).status == 200
            if time.perf_counter() - frozen >= TIDY_SECONDS:
                freeze_new_objects()
                frozen = time.perf_counter()
    gc.unfreeze()
    cycles = gc.collect()
    working = state_size(auth)

    applied = []
    with connection.cursor() as cursor:
        for n in range(50):
            victim = secret_of(step * n + 1)
            assert call(auth, victim).status == 200
            cursor.execute("UPDATE accounts_apitoken SET revoked_at = now() WHERE prefix = %s", [victim[:12]])
            started = time.perf_counter()
            auth.refresh()
            applied.append(time.perf_counter() - started)
            assert call(auth, victim).status == 401
            cursor.execute("UPDATE accounts_apitoken SET revoked_at = NULL WHERE prefix = %s", [victim[:12]])
        auth.refresh()

    auth.lookups_per_second = FLOOD_LOOKUPS
    time.sleep(1)  # this second's look-ups were granted at the old cap
    flood = itertools.count()
    with CaptureQueriesContext(connection) as queries:
        deadline = time.perf_counter() + 2
        while time.perf_counter() < deadline:
            call(auth, f"nlp_zz{next(flood):06d}_" + "y" * 43)
    assert call(auth, secret_of(0)).status == 200  # a token in use still passes, from memory
    return {
        "tokens": total,
        "state at start (MB)": at_start / 1e6,
        f"state, {WORKING_SET:,} in use (MB)": working / 1e6,
        "first decision (ms)": first_decision * 1e3,
        "per change (ms)": statistics.median(applied) * 1e3,
        "flood: calls/s": next(flood) / 2,
        "flood: queries/s": len(queries) / 2,
        "longest GC pause (ms)": max(pauses, default=0) * 1e3,
        "cycles left to GC": cycles,
    }


@contextmanager
def collector_pauses():
    """The durations of the garbage collector's passes meanwhile (a list, filled as they happen)."""
    pauses, started = [], []

    def note(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses.append(time.perf_counter() - started.pop())

    gc.callbacks.append(note)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(note)


def main() -> None:
    database.prepare()
    rows = []
    for total in SIZES:
        started = time.perf_counter()
        populate(total)
        print(f"{total:,} tokens in the database ({time.perf_counter() - started:.0f} s to add them)", flush=True)
        rows.append(measure(total))
    columns = list(rows[0])
    print("\n" + " | ".join(f"{column:>26}" for column in columns))
    for row in rows:
        print(" | ".join(f"{value:>26,.1f}" if isinstance(value, float) else f"{value:>26,}" for value in row.values()))
    print(
        f"\nstate at 1M / state at 10k: {rows[-1][columns[2]] / rows[0][columns[2]]:.2f}x  (flat: cost grows with use, not size)"
    )


if __name__ == "__main__":
    main()
