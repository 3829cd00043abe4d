"""Rate-limit counters: the same decision in process memory or in Redis.

Algorithm (rolling windows: minute, hour, day). A window of W seconds is cut
into SLICES buckets of W/SLICES seconds. A request at time t, in bucket i, is
allowed when the requests already counted in buckets i-SLICES .. i (SLICES+1
buckets, which cover at least the W seconds before t) are fewer than the quota.
So in any rolling period of length W at most `quota` requests are allowed: an
exact upper bound, unlike a fixed window (up to 2x at a boundary) or the
sliding-window estimate. The price is on the other side: a request older than
W but inside the oldest bucket still counts, so the window is effectively
between W and W*(1 + 1/SLICES) long; a client running flat out gets at least
quota*SLICES/(SLICES+1) per W, i.e. at most 1/SLICES (1.6%) fewer than the quota.

The month window is the billing period: one bucket per period, reset when a
new period starts (as invoices are).

All or nothing: every check is evaluated before any counter moves, so a
refused request consumes no quota. Concurrency is a set of leases with a TTL.
"""

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import redis

SLICES = 60


@dataclass(frozen=True, slots=True)
class Check:
    """One counter to test and take: `slots` buckets ending at bucket `index`."""

    key: str
    quota: int
    index: int
    slots: int
    ttl: int  # seconds the counter must outlive its newest bucket


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    counts: tuple[int, ...]  # requests already counted per check (up to the refused one)
    refused: int | None = None  # position of the refused check; len(checks) = concurrency
    oldest: int = 0  # oldest non-empty bucket of the refused check: when it expires, room frees up
    lease: str | None = None


class RollingCount:
    """A ring of bucket counts with a running total."""

    __slots__ = ("last", "total", "ring", "expires")

    def __init__(self, slots: int, index: int):
        self.last = index
        self.total = 0
        self.ring = [0] * slots
        self.expires = 0.0  # after this time every bucket is out of the window

    def advance(self, index: int) -> None:
        gap = index - self.last
        if gap <= 0:
            return  # a thread that read the clock a moment earlier: count it in the newest bucket
        ring, size = self.ring, len(self.ring)
        if gap >= size:
            self.ring = [0] * size
            self.total = 0
        else:
            for bucket in range(self.last + 1, index + 1):
                slot = bucket % size
                self.total -= ring[slot]
                ring[slot] = 0
        self.last = index

    def oldest(self) -> int:
        size = len(self.ring)
        for bucket in range(self.last - size + 1, self.last + 1):
            if self.ring[bucket % size]:
                return bucket
        return self.last


class MemoryCounters:
    """Exact within one process (threads included)."""

    def __init__(self):
        self._counts: dict[tuple[int, str], RollingCount] = {}
        self._leases: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, account: int, checks: list[Check], now: float, concurrency: int | None, lease_ttl: float) -> Verdict:
        with self._lock:
            counters = []
            for position, check in enumerate(checks):
                counter = self._counts.get((account, check.key))
                if counter is None or len(counter.ring) != check.slots:
                    counter = self._counts[(account, check.key)] = RollingCount(check.slots, check.index)
                counter.advance(check.index)
                counter.expires = now + check.ttl
                if counter.total >= check.quota:
                    counts = tuple(c.total for c in counters) + (counter.total,)
                    return Verdict(False, counts, position, counter.oldest())
                counters.append(counter)
            lease = None
            if concurrency is not None:
                leases = self._leases.setdefault(account, {})
                for expired in [lease for lease, expiry in leases.items() if expiry <= now]:
                    del leases[expired]
                if len(leases) >= concurrency:
                    return Verdict(False, tuple(c.total for c in counters), len(checks))
                lease = new_lease_id(account)
                leases[lease] = now + lease_ttl
            counts = []
            for counter in counters:
                counts.append(counter.total)
                counter.ring[counter.last % len(counter.ring)] += 1
                counter.total += 1
            return Verdict(True, tuple(counts), lease=lease)

    def release(self, lease: str) -> bool:
        with self._lock:
            return self._leases.get(lease_account(lease), {}).pop(lease, None) is not None

    def sweep(self, now: float) -> None:
        """Forget counters and leases that have expired (called off the request path)."""
        with self._lock:
            for key in [key for key, counter in self._counts.items() if counter.expires < now]:
                del self._counts[key]
            for account in [account for account, leases in self._leases.items() if max(leases.values(), default=0) < now]:
                del self._leases[account]


class RedisCounters:
    """Exact across processes and replicas: one atomic Lua script, one round trip per decision."""

    _script_source = (Path(__file__).parent / "limiter.lua").read_text()

    def __init__(self, url: str):
        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(self._script_source)

    def take(self, account: int, checks: list[Check], now: float, concurrency: int | None, lease_ttl: float) -> Verdict:
        keys = [f"rl:{{{account}}}:{check.key}" for check in checks]
        args = [now, len(checks)]
        for check in checks:
            args += [check.quota, check.index, check.slots, check.ttl]
        lease = None
        if concurrency is not None:
            lease = new_lease_id(account)
            keys.append(f"rl:{{{account}}}:leases")
            args += [concurrency, lease, now + lease_ttl, int(lease_ttl) + 1]
        allowed, refused, oldest, *counts = self._script(keys=keys, args=args)
        if allowed:
            return Verdict(True, tuple(counts), lease=lease)
        return Verdict(False, tuple(counts), refused - 1, oldest)

    def release(self, lease: str) -> bool:
        return bool(self._redis.zrem(f"rl:{{{lease_account(lease)}}}:leases", lease))

    def sweep(self, now: float) -> None:
        pass  # keys expire by their TTL


def new_lease_id(account: int) -> str:
    return f"{account}.{secrets.token_urlsafe(12)}"


def lease_account(lease: str) -> int | None:
    account, _, _ = lease.partition(".")
    return int(account) if account.isdigit() else None
