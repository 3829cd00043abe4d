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

import math
import secrets
import threading
import time
from pathlib import Path
from typing import NamedTuple

import redis

from billing.models import Window

SLICES = 60


class Limit:
    """One limit: `quota` calls per rolling window, or per billing period (Window.MONTH).

    Built once per plan when its rules load, so a decision allocates nothing for it.
    An unknown window raises ValueError: it is never taken for another.
    """

    __slots__ = ("name", "quota", "description", "seconds", "span", "slots", "ttl")

    def __init__(self, name: str, window: str, quota: int, description: str = ""):
        self.name = name  # the counter's key and the policy's name in the RateLimit fields
        self.quota = quota
        self.description = description  # "per minute", "on /v1/*/summarization per minute"
        self.seconds = Window(window).seconds  # None: the billing period
        self.span = self.seconds / SLICES if self.seconds else None  # bucket length
        self.slots = SLICES + 1 if self.seconds else 1
        self.ttl = self.seconds + self.span if self.seconds else None

    def bucket(self, now: float, period: tuple[float, float]) -> int:
        return int(now // self.span) if self.span else int(period[0])

    def expiry(self, now: float, period: tuple[float, float]) -> float:
        """When every bucket counted now has left the window."""
        return now + self.ttl if self.ttl else period[1]

    def reset_at(self, oldest: int, period: tuple[float, float]) -> float:
        """When the oldest non-empty bucket leaves the window, making room for one call."""
        return (oldest + self.slots) * self.span if self.span else period[1]


class Verdict(NamedTuple):  # a tuple: made on every decision, so cheap to make
    allowed: bool
    refused: int | None = None  # position of the refused limit; len(limits) = concurrency
    oldest: int = 0  # oldest non-empty bucket of the refused limit
    lease: str | None = None


ALLOWED = Verdict(True)


class RollingCount:
    """A ring of bucket counts with a running total; `last` is the newest bucket's index."""

    __slots__ = ("last", "total", "ring", "slots", "expires")

    def __init__(self, limit: Limit, index: int, period: tuple[float, float]):
        self.total = 0
        self.slots = limit.slots
        self.ring = [0] * self.slots
        self.move_to(limit, index, period)

    def move_to(self, limit: Limit, index: int, period: tuple[float, float]) -> None:
        """Make bucket `index` the newest, emptying those that left the window."""
        if self.total:
            ring, size = self.ring, self.slots
            if index - self.last >= size:
                self.ring = [0] * size
                self.total = 0
            else:
                for bucket in range(self.last + 1, index + 1):
                    slot = bucket % size
                    self.total -= ring[slot]
                    ring[slot] = 0
        self.last = index
        # When every bucket counted so far has left the window: it changes only with the newest bucket.
        self.expires = (index + self.slots) * limit.span if limit.span else period[1]

    def oldest(self) -> int:
        size = self.slots
        for bucket in range(self.last - size + 1, self.last + 1):
            if self.ring[bucket % size]:
                return bucket
        return self.last


class Current:
    """An account's counters for the limits it was last checked against, in their order, until when
    they stay current (every one's newest bucket is still the current one, so no bucket moves), and
    the calls allowed since they were last settled. A call within `room` (what the nearest limit had
    left then) is allowed without touching them, whatever the number of limits."""

    __slots__ = ("limits", "period", "counters", "until", "taken", "room")

    def __init__(self, limits: tuple[Limit, ...], period: tuple[float, float], counters: list, until: float):
        self.limits, self.period, self.counters, self.until = limits, period, counters, until
        self.taken = 0
        self.settle()

    def settle(self) -> None:
        """Count the calls taken since the last time on the counters' newest buckets, and measure the room left."""
        if self.taken:
            for counter in self.counters:
                counter.ring[counter.last % counter.slots] += self.taken
                counter.total += self.taken
            self.taken = 0
        self.room = min(
            (limit.quota - counter.total for limit, counter in zip(self.limits, self.counters)), default=UNLIMITED
        )


UNLIMITED = 2**62  # the room of no limits at all


class MemoryCounters:
    """Exact within one process (threads included)."""

    waits = False  # a decision never waits on anything but this process's lock

    def __init__(self):
        self._counts: dict[int, dict[str, RollingCount]] = {}
        self._current: dict[int, Current] = {}
        self._leases: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, account, limits, now, period, concurrency, lease_ttl) -> Verdict:
        with self._lock:
            current = self._current.get(account)
            if current is None or current.limits is not limits or current.period != period or now >= current.until:
                if current is not None:
                    current.settle()
                current = self._current[account] = self._move(account, limits, now, period)
            if concurrency is None and current.taken < current.room:  # the common case: no counter moves
                current.taken += 1
                return ALLOWED
            current.settle()
            counters = current.counters
            for position, limit in enumerate(limits):
                if counters[position].total >= limit.quota:
                    return Verdict(False, position, counters[position].oldest())
            lease = None
            if concurrency is not None:
                leases = self._leases.setdefault(account, {})
                for expired in [lease for lease, expiry in leases.items() if expiry <= now]:
                    del leases[expired]
                if len(leases) >= concurrency:
                    return Verdict(False, len(limits))
                lease = new_lease_id(account)
                leases[lease] = now + lease_ttl
            current.taken += 1
            return Verdict(True, lease=lease)

    def _move(self, account, limits, now, period) -> Current:
        """The account's counters for these limits, each moved to the bucket of `now`."""
        counts = self._counts.get(account)
        if counts is None:
            counts = self._counts[account] = {}
        counters, until = [], period[1]
        for limit in limits:
            index = limit.bucket(now, period)
            counter = counts.get(limit.name)
            if counter is None or counter.slots != limit.slots:
                counter = counts[limit.name] = RollingCount(limit, index, period)
            elif index > counter.last:  # an earlier index: a thread that read the clock just before
                counter.move_to(limit, index, period)
            elif not limit.span:  # the same billing period, perhaps with a new end (a trial extended)
                counter.expires = max(counter.expires, period[1])
            counters.append(counter)
            if limit.span:
                until = min(until, (counter.last + 1) * limit.span)
        return Current(limits, period, counters, until)

    def release(self, lease: str) -> bool:
        with self._lock:
            return self._leases.get(lease_account(lease), {}).pop(lease, None) is not None

    def sweep(self, now: float) -> None:
        """Forget counters and leases that have expired (called off the request path)."""
        with self._lock:
            for current in self._current.values():
                current.settle()
            self._current.clear()  # it may hold counters deleted here
            for account, counts in list(self._counts.items()):
                for name in [name for name, counter in counts.items() if counter.expires < now]:
                    del counts[name]
                if not counts:
                    del self._counts[account]
            for account in [
                account for account, leases in self._leases.items() if max(leases.values(), default=0) < now
            ]:
                del self._leases[account]


class CountersDown(redis.ConnectionError):
    """Redis failed less than a second ago, and is not asked again yet: the failure is the one already reported."""


class RedisCounters:
    """Exact across processes and replicas: one atomic Lua script, one round trip per decision."""

    waits = True  # for the round trip: a server deciding on one loop takes it on a thread (usage/server.py)

    _script_source = (Path(__file__).parent / "limiter.lua").read_text()

    def __init__(self, url: str, connections: int = 32, wait: float = 1.0):
        # Every server thread may decide at once: they share a bounded pool and queue for it. An
        # exhausted pool means busy, not down; only a connection not free within `wait` seconds,
        # or a Redis not answering within 0.5 s, counts as unavailable.
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=connections, timeout=wait, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._script = self._redis.register_script(self._script_source)
        self._down_until = 0.0  # after a failure, Redis is not asked again for a second

    def take(self, account, limits, now, period, concurrency, lease_ttl) -> Verdict:
        # A Redis that does not answer costs each decision its timeout: after one failure, the
        # next second's decisions are answered at once as if it were down (a server deciding on
        # one thread would otherwise wait half a second on every call).
        if time.monotonic() < self._down_until:
            raise CountersDown("Redis failed less than a second ago")
        try:
            return self._take(account, limits, now, period, concurrency, lease_ttl)
        except redis.RedisError:
            self._down_until = time.monotonic() + 1.0
            raise

    def _take(self, account, limits, now, period, concurrency, lease_ttl) -> Verdict:
        keys = [f"rl:{{{account}}}:{limit.name}" for limit in limits]
        args = [now, len(limits)]
        for limit in limits:
            ttl = math.ceil(limit.expiry(now, period) - now)
            args += [limit.quota, limit.bucket(now, period), limit.slots, ttl]
        lease = None
        if concurrency is not None:
            lease = new_lease_id(account)
            keys.append(f"rl:{{{account}}}:leases")
            args += [concurrency, lease, now + lease_ttl, math.ceil(lease_ttl)]
        allowed, refused, oldest, *_counts = self._script(keys=keys, args=args)
        if allowed:
            return Verdict(True, lease=lease)
        return Verdict(False, refused - 1, oldest)

    def release(self, lease: str) -> bool:
        return bool(self._redis.zrem(f"rl:{{{lease_account(lease)}}}:leases", lease))

    def sweep(self, now: float) -> None:
        pass  # keys expire by their TTL


def new_lease_id(account: int) -> str:
    return f"{account}.{secrets.token_urlsafe(12)}"


def lease_account(lease: str) -> int | None:
    account, _, _ = lease.partition(".")
    return int(account) if account.isascii() and account.isdigit() else None
