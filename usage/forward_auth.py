"""The forward-auth decision Traefik asks for on every API call.

Each process keeps what a decision needs in memory, sized by what is in use,
not by how many tokens exist: every plan's rules (a handful), and a bounded
cache of the tokens being used (credential: keyed hash, account, plan, billing
period). A token not in the cache is looked up by its prefix on its first call
(one indexed query), so a new token works at once; prefixes that are no token
are remembered apart, so a flood of made-up tokens neither queries the
database on every call (look-ups are also capped per second) nor pushes out
the tokens in use. A background thread reads the change feed every
FORWARD_AUTH_REFRESH_SECONDS: PostgreSQL triggers add a row, in the writing
transaction, for every write that can change a credential or a plan, and the
thread forgets those credentials (or reloads the plans). The work per change
is independent of the number of tokens. So a warm decision makes no database
query: it parses the token, checks its keyed hash, takes every applicable
limit from the counters (usage/limiter.py) and hands the call to the usage
recorder.

`ForwardAuth.answer(environ)` takes a WSGI environ (Django's `request.META` is
one) and returns an `Answer`, so the Django view and the lean WSGI entry point
(usage/wsgi.py) share every line of the decision.
"""

import ipaddress
import itertools
import logging
import math
import posixpath
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import unquote

import psycopg
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection
from django.db.models import Exists, OuterRef

from accounts.models import (
    PREFIX_END,
    ApiToken,
    Membership,
    expiry_instant,
    network,
    pattern_regex,
    token_hash_key,
    token_matches,
    token_prefix,
)
from billing.models import Plan, Window, calendar_month
from core.problems import CONTENT_TYPE, problem_body
from usage.limiter import CountersDown, Limit, MemoryCounters, RedisCounters, Verdict
from usage.recorder import recorder, storable

log = logging.getLogger(__name__)

STATUS_LINES = {
    200: "200 OK",
    204: "204 No Content",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    402: "402 Payment Required",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    408: "408 Request Timeout",
    429: "429 Too Many Requests",
    431: "431 Request Header Fields Too Large",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}
# The request headers a decision reads, as environ keys: a server may pass it only these (usage/server.py).
HEADERS_READ = frozenset(
    ("HTTP_AUTHORIZATION", "HTTP_X_FORWARDED_URI", "HTTP_X_FORWARDED_METHOD", "HTTP_X_FORWARDED_FOR", "HTTP_X_LEASE_ID")
)
MAX_ENDPOINT_LENGTH = 200
METHODS = {method: method for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
MAX_ENDPOINTS_KEPT = 10_000  # per plan, in limits_for's cache


class Answer(NamedTuple):  # a tuple: made on every decision, so cheap to make
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def status_line(self) -> str:
        return STATUS_LINES[self.status]


def problem(status: int, title: str, detail: str, headers: list[tuple[str, str]] = (), **extra) -> Answer:
    """An RFC 9457 problem answer."""
    return Answer(status, [("Content-Type", CONTENT_TYPE), *headers], problem_body(status, title, detail, **extra))


def unauthorized(detail: str) -> Answer:
    return problem(401, "Invalid token", detail, [("WWW-Authenticate", 'Bearer realm="api", error="invalid_token"')])


def unavailable(title: str) -> Answer:
    return problem(503, title, "Try again in a few seconds.", [("Retry-After", "5")])


MISSING_TOKEN = unauthorized("Send your API token as `Authorization: Bearer <token>`.")
MALFORMED_TOKEN = unauthorized("The Authorization header does not hold a well-formed API token.")
UNKNOWN_TOKEN = unauthorized("This API token is unknown or has been revoked.")


@dataclass(frozen=True, slots=True)
class PlanRules:
    slug: str
    limits: tuple[Limit, ...]
    endpoint_limits: tuple[tuple[Callable, Limit], ...]  # (the path pattern's match, its limit)
    concurrency: int | None

    @classmethod
    def of(cls, plan: Plan) -> "PlanRules":
        return cls(
            slug=plan.slug,
            limits=tuple(
                Limit(window, window, quota, Window(window).label) for window, quota in plan.window_limits().items()
            ),
            endpoint_limits=tuple(
                (
                    rule.regex().match,
                    Limit(
                        f"{rule.pattern} per {rule.window}",
                        rule.window,
                        rule.quota,
                        f"on {rule.pattern} {rule.get_window_display()}",
                    ),
                )
                for rule in plan.endpoint_limits.all()
            ),
            concurrency=plan.concurrency,
        )

    by_endpoint: dict[str, tuple[Limit, ...]] = field(default_factory=dict)  # limits_for's answers

    def limits_for(self, endpoint: str) -> tuple[Limit, ...]:
        limits = self.by_endpoint.get(endpoint)
        if limits is None:
            limits = self.limits + tuple(limit for matches, limit in self.endpoint_limits if matches(endpoint))
            if len(self.by_endpoint) >= MAX_ENDPOINTS_KEPT:  # made-up paths: start over rather than grow
                self.by_endpoint.clear()
            self.by_endpoint[endpoint] = limits
        return limits


def forwarded_client(environ: dict, hops: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The API client's address, from the X-Forwarded-For the gateway sent with the call; None if it is not there.

    The rule of core/proxy.py's client_ip: each proxy appends the address it was connected from,
    so with N trusted proxies the client is the Nth entry from the right, and anything further
    left was written by the client. Traefik builds the X-Forwarded-For of its forward-auth request
    that way: its own peer's address (trustForwardHeader: false, as shipped), or, trusting the
    proxies in front of it, their chain followed by its peer's. So the chain we receive is the one
    an upstream behind the same proxies gets, and TRUSTED_PROXY_COUNT applies as it is. Two
    differences from client_ip: at least one hop is counted, since the gateway is always a proxy
    here (forward-auth is only called by it, and it always writes the header) even where the pages
    are served with no proxy in front (TRUSTED_PROXY_COUNT=0); and there is no fallback to
    REMOTE_ADDR, which is the gateway's own address, never the client's: no usable entry is None,
    and a token restricted to networks is then refused.
    """
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < hops:
        return None
    try:
        address = ipaddress.ip_address(forwarded[-hops].strip())
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address  # ::ffff:a.b.c.d is IPv4


# Why a customer's calls are all refused (billing.Customer.calls_blocked, set by the spend-cap job
# and by syncs under FAILED_PAYMENT_POLICY "block"), and how the customer fixes it.
BLOCKED = {
    "spend_cap": problem(
        402,
        "Spend cap reached",
        "This billing period's words have reached the spend cap you set. Raise or remove the cap on the Billing "
        "page of your account; calls resume within minutes, or at the next billing period.",
        blocked="spend_cap",
    ),
    "payment_failed": problem(
        402,
        "Payment failed",
        "Your last payment failed and calls are blocked until it is paid. Update your card or pay the open "
        "invoice in the Customer Portal (Billing page of your account).",
        blocked="payment_failed",
    ),
}


def not_allowed(title: str, detail: str, restriction: str) -> Answer:
    return problem(403, title, detail, restriction=restriction)


@dataclass(frozen=True, slots=True)
class Restrictions:
    """A token's own restrictions (accounts.ApiToken), checked after its secret and before the plan's limits.

    None for each one the token does not set; a token with none has no Restrictions at all, so
    it costs the decision one attribute check.
    """

    expires_at: float | None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    endpoints: tuple[str, ...] | None  # the allowed patterns, as written
    endpoint_matches: tuple[Callable, ...]
    limits: tuple[Limit, ...]  # the token's own limits, counted with the plan's in the same take

    @classmethod
    def of(cls, token_id: int, endpoints, networks, expires_on, per_minute) -> "Restrictions | None":
        if not (endpoints or networks or expires_on or per_minute):
            return None
        return cls(
            expires_at=expiry_instant(expires_on).timestamp() if expires_on else None,
            # A value that is no network (written past the form) matches nothing: it never opens the token.
            networks=tuple(parsed for parsed in map(parsed_network, networks) if parsed) if networks else None,
            endpoints=tuple(endpoints) if endpoints else None,
            endpoint_matches=tuple(pattern_regex(pattern).match for pattern in endpoints or ()),
            # Counted per token, in the account's counters: the token's id is in the counter's name.
            limits=(Limit(f"token-{token_id}-minute", Window.MINUTE, per_minute, "for this token per minute"),)
            if per_minute
            else (),
        )

    def refusal(self, environ: dict, endpoint: str, now: float, hops: int) -> Answer | None:
        """The answer refusing this call, naming the restriction; None if the restrictions allow it."""
        if self.expires_at is not None and now >= self.expires_at:
            last_day = datetime.fromtimestamp(self.expires_at - 1, UTC).date()
            return problem(
                401,
                "Token expired",
                f"This API token expired at the end of {last_day} (UTC). Create a new one on the Tokens page.",
                [("WWW-Authenticate", 'Bearer realm="api", error="invalid_token"')],
                restriction="expiry",
            )
        if self.networks is not None:
            client = forwarded_client(environ, hops)
            if client is None or not any(client in allowed for allowed in self.networks):
                return not_allowed(
                    "Client network not allowed",
                    f"This API token accepts calls only from its allowed networks, not from {client or 'an unknown address'}.",
                    "networks",
                )
        if self.endpoints is not None and not any(matches(endpoint) for matches in self.endpoint_matches):
            return not_allowed(
                "Endpoint not allowed for this token",
                f"This API token may call only {', '.join(self.endpoints)}.",
                "endpoints",
            )
        return None


def parsed_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return network(value)
    except ValueError:
        return None


@dataclass(slots=True)
class Credential:
    digest: bytes
    token_id: int
    account: int
    plan_id: int | None  # None (no customer row yet): the default plan
    period: tuple[float, float] | None  # the customer's billing period, as timestamps
    identity: tuple[tuple[str, str], ...]  # headers for the upstream (X-Plan is added from the plan)
    restrictions: Restrictions | None = None  # the token's own, if it has any
    blocked: str = ""  # why the customer's calls are all refused (billing.Customer.calls_blocked); "": they are not
    verified: int | None = None  # hash() of the secret last found to match the digest
    own_limits: tuple = (None, ())  # the plan's limits last seen, and them with the token's own after them

    def verifies(self, token: str, key: bytes) -> bool:
        """Whether `token` is this credential's secret. The keyed BLAKE2b is computed once; then the secret
        is known by its hash(): SipHash under this process's random key (unless PYTHONHASHSEED fixes it),
        64 bits an attacker never sees (a guess matches one time in 2**64), at a tenth of the cost; no secret kept."""
        if hash(token) == self.verified:
            return True
        if token_matches(token, self.digest, key):
            self.verified = hash(token)
            return True
        return False

    def with_own_limits(self, limits: tuple[Limit, ...]) -> tuple[Limit, ...]:
        """The plan's limits and the token's own, as the same tuple call after call (so memory counters
        stay current between calls, as for the plan's alone)."""
        plan_limits, combined = self.own_limits
        if plan_limits is not limits:
            combined = limits + self.restrictions.limits
            self.own_limits = (limits, combined)
        return combined


def load_plans() -> tuple[dict[int, PlanRules], PlanRules | None]:
    """Every plan's rules (a handful), and the default plan's."""
    plans = {plan.id: PlanRules.of(plan) for plan in Plan.objects.prefetch_related("endpoint_limits")}
    default = Plan.objects.filter(is_default=True).values_list("id", flat=True).first()
    return plans, plans.get(default)


def load_credential(prefix: str) -> Credential | None:
    """The active token with this prefix, of an active organization with an active member; None if
    there is none (a user deactivated or deleted takes their personal organization's tokens along)."""
    members = Membership.objects.filter(organization=OuterRef("organization"), user__is_active=True)
    row = (
        ApiToken.objects.active()
        .filter(Exists(members), prefix=prefix, organization__is_active=True)
        .values_list(
            "digest",
            "id",
            "organization_id",
            "created_by_id",
            "organization__customer__plan_id",
            "organization__customer__current_period_start",
            "organization__customer__current_period_end",
            "allowed_endpoints",
            "allowed_networks",
            "expires_on",
            "per_minute",
            "organization__customer__calls_blocked",
        )
        .first()
    )
    if row is None:
        return None
    digest, token_id, organization_id, creator_id, plan_id, period_start, period_end, *restrictions, blocked = row
    period = (period_start.timestamp(), period_end.timestamp()) if period_start and period_end else None
    creator = () if creator_id is None else (("X-User-Id", str(creator_id)),)  # None: that member was deleted
    identity = (("X-Organization-Id", str(organization_id)), *creator, ("X-Token-Id", str(token_id)))
    return Credential(
        bytes.fromhex(digest),
        token_id,
        organization_id,
        plan_id,
        period,
        identity,
        Restrictions.of(token_id, *restrictions),
        blocked or "",
    )


# The change feed: triggers (usage migration 0006) add a row naming the token prefix for every
# write that can change a credential (a token, its organization, its customer's plan or period),
# and one without a prefix when plans change. Rows are read by transaction id: everything from
# transactions that were still running at the last read (its snapshot's xmin) is read again, so
# a change whose transaction commits late is never skipped. Applying a change twice is harmless.
CHANGES_SINCE = """
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin)
SELECT horizon.xmin, change.prefix, change.id IS NOT NULL
FROM horizon LEFT JOIN forward_auth_change AS change ON change.xid >= %s::xid8
"""
FORGET_OLD_CHANGES = "DELETE FROM forward_auth_change WHERE changed_at < now() - INTERVAL '1 day'"


def current_horizon() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return cursor.fetchone()[0]


def changes_since(horizon: str) -> tuple[str, set[str | None]]:
    """The new horizon, and the prefixes changed since `horizon` (None: the plans changed)."""
    with connection.cursor() as cursor:
        cursor.execute(CHANGES_SINCE, [horizon])
        rows = cursor.fetchall()
    return rows[0][0], {prefix for _, prefix, changed in rows if changed}


def normal_path(uri: str) -> str:
    """The path as the upstream will route it: no query, percent-decoded, no `//`, `.` or `..`.

    Endpoint limits match on this, so `/v1/en/summariz%61tion` counts as `/v1/en/summarization`.
    """
    path = uri.partition("?")[0]
    if "%" in path or "//" in path or "/." in path or "\x00" in path:  # the common case costs nothing
        path = storable("/" + posixpath.normpath(unquote(path, errors="replace")).lstrip("/"), MAX_ENDPOINT_LENGTH)
    return path[:MAX_ENDPOINT_LENGTH]


def bearer_token(header: str) -> str | None:
    """The token of `Bearer <token>` or `Token <token>`; None when the header is of another scheme."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "token") else None


SOLE_PROCESS_LOCK = 7_346_917  # the advisory lock of the process whose memory holds the counters


def claim_sole_process() -> psycopg.Connection:
    """Memory counters are exact only if one process decides for this database: hold a lock that says so.

    A second process (another granian worker, another replica) cannot take it, and refuses to
    start rather than count on its own, which would multiply every limit and lose lease releases.
    """
    lock = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    if not lock.execute("SELECT pg_try_advisory_lock(%s)", [SOLE_PROCESS_LOCK]).fetchone()[0]:
        lock.close()
        raise ImproperlyConfigured(
            "FORWARD_AUTH_BACKEND=memory counts in one process, and another process already serves "
            "forward-auth on this database. Set REDIS_URL (forward-auth then counts in Redis), "
            "or run a single worker."
        )
    return lock


class CalendarMonth:
    """The current UTC calendar month as timestamps, recomputed when it ends."""

    def __init__(self):
        self.start = self.end = 0.0

    def at(self, now: float) -> tuple[float, float]:
        if not self.start <= now < self.end:
            start, end = calendar_month(datetime.fromtimestamp(now, UTC))
            self.start, self.end = start.timestamp(), end.timestamp()
        return self.start, self.end


class LookupBudgetSpent(Exception):
    """This second's database look-ups of unknown prefixes are used up (a flood of made-up tokens)."""


class ForwardAuth:
    def __init__(
        self,
        counters,
        *,
        fail_open: bool,
        refresh_seconds: float,
        lease_ttl: float,
        recorder=recorder,
        clock=time.time,
        sole_process: bool = False,
        cache_size: int = 100_000,
        lookups_per_second: int = 1000,
        client_hops: int = 1,
    ):
        self.counters = counters
        self.clock = clock
        self.fail_open = fail_open
        self.refresh_seconds = refresh_seconds
        self.lease_ttl = lease_ttl
        self.recorder = recorder
        self.plans: dict[int, PlanRules] | None = None  # None until the database first answers
        self.default_plan: PlanRules | None = None
        # The tokens in use, and prefixes known not to be tokens: bounded, oldest out first, kept
        # apart so that made-up tokens never push out real ones.
        self.credentials: dict[str, Credential] = {}
        self.unknown: dict[str, bool] = {}
        self.cache_size = cache_size
        self.lookups_per_second = lookups_per_second
        self.client_hops = client_hops  # where X-Forwarded-For holds the client (forwarded_client)
        self._lookups_left, self._lookups_renew = 0, 0.0
        self._horizon = ""  # the change feed's read position
        self._generation = 0  # moves with every change applied: a look-up that raced one is not cached
        self._cache_lock = threading.Lock()
        self._hash_key = token_hash_key()
        self._month = CalendarMonth()
        self._request_ids = itertools.count()
        self._process_id = secrets.token_hex(10)
        self._started = False
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._forgotten_at = 0.0
        self.sole_process = sole_process  # must be the only process deciding for this database (memory counters)
        self._sole_process_lock: psycopg.Connection | None = None

    @classmethod
    def from_settings(cls) -> "ForwardAuth":
        in_memory = settings.FORWARD_AUTH_BACKEND == "memory"
        return cls(
            MemoryCounters()
            if in_memory
            else RedisCounters(
                settings.REDIS_URL, settings.FORWARD_AUTH_REDIS_CONNECTIONS, settings.FORWARD_AUTH_REDIS_WAIT
            ),
            fail_open=settings.FORWARD_AUTH_FAIL_OPEN,
            refresh_seconds=settings.FORWARD_AUTH_REFRESH_SECONDS,
            lease_ttl=settings.FORWARD_AUTH_LEASE_TTL,
            sole_process=in_memory,
            cache_size=settings.FORWARD_AUTH_CACHE_SIZE,
            lookups_per_second=settings.FORWARD_AUTH_LOOKUPS_PER_SECOND,
            client_hops=max(settings.TRUSTED_PROXY_COUNT, 1),
        )

    # Plans, the change feed and its reader, off the request path.

    def start(self) -> None:
        """Load the plans and start the change feed's reader (once). Raises only ImproperlyConfigured."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self.refresh()
            if self.refresh_seconds > 0:
                self._refresher = threading.Thread(
                    target=self._refresh_forever, name="forward-auth-refresh", daemon=True
                )
                self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._refresher:
            self._refresher.join()
        if self._sole_process_lock is not None:
            self._sole_process_lock.close()

    def refresh(self) -> None:
        """Apply the changes made since the last refresh. Raises ImproperlyConfigured if this process may not decide."""
        try:
            if self.sole_process and self._sole_process_lock is None:
                self._sole_process_lock = claim_sole_process()
            if self.plans is None:
                self._horizon = current_horizon()  # first: changes during the load are read next time
                self.plans, self.default_plan = load_plans()
                return
            horizon, changed = changes_since(self._horizon)
            if changed:
                self._forget(changed - {None})
                if None in changed:
                    self.plans, self.default_plan = load_plans()
            self._horizon = horizon
            if time.monotonic() - self._forgotten_at > 600:
                self._forgotten_at = time.monotonic()
                with connection.cursor() as cursor:
                    cursor.execute(FORGET_OLD_CHANGES)
        except (DatabaseError, psycopg.OperationalError):
            log.exception("Forward-auth: cannot read tokens and plans; keeping what is known")
            connection.close()  # reconnect on the next attempt

    def _forget(self, prefixes: set[str]) -> None:
        with self._cache_lock:
            self._generation += 1
            for prefix in prefixes:
                self.credentials.pop(prefix, None)
                self.unknown.pop(prefix, None)

    def _refresh_forever(self) -> None:
        try:
            while not self._stop.wait(self.refresh_seconds):
                try:
                    self.refresh()
                    self.counters.sweep(self.clock())
                except Exception:  # never let the thread die: credentials would silently go stale
                    log.exception("Forward-auth: refresh failed")
        finally:
            connection.close()  # this thread's own connection

    def _look_up(self, prefix: str) -> Credential | None:
        """A prefix not in the cache, from the database (a bounded number a second), then cached."""
        with self._cache_lock:
            now = time.monotonic()
            if now >= self._lookups_renew:
                self._lookups_left, self._lookups_renew = self.lookups_per_second, now + 1.0
            if self._lookups_left <= 0:
                raise LookupBudgetSpent
            self._lookups_left -= 1
            generation = self._generation
        try:
            credential = load_credential(prefix)
        finally:
            if not connection.in_atomic_block:  # back to the pool: the lean entry point has no request end to do it
                connection.close()
        with self._cache_lock:
            if generation == self._generation:  # else a change may have come after this read: do not keep it
                cache = self.credentials if credential else self.unknown
                if len(cache) >= self.cache_size:
                    del cache[next(iter(cache))]
                cache[prefix] = credential or True
        return credential

    # The decision, on the request path.

    def answer(self, environ: dict, may_wait: bool = True) -> Answer | None:
        """The decision on a forward-auth call. With may_wait=False, None where it would wait on the
        database (the plans not yet loaded, a token not yet cached) or on Redis (its counters): a
        server deciding on one thread asks again from another thread (usage/server.py)."""
        if self.plans is None:
            if not may_wait:
                return None
            self.start()
            if self.plans is None:  # the database has not answered since this process started
                return (
                    Answer(200, [("X-Auth-Unverified", "1")])
                    if self.fail_open
                    else unavailable("Token store unavailable")
                )
        header = environ.get("HTTP_AUTHORIZATION")
        if not header:
            return MISSING_TOKEN
        token = bearer_token(header)
        if token is None:
            return MALFORMED_TOKEN
        credential = self.credentials.get(token[:PREFIX_END])  # a token in use: its secret's check covers its form
        if credential is None:
            prefix = token_prefix(token)
            if prefix is None:
                return MALFORMED_TOKEN
            if prefix in self.unknown:
                return UNKNOWN_TOKEN
            if not may_wait:
                return None
            try:
                credential = self._look_up(prefix)
            except LookupBudgetSpent:
                return unavailable("Too many unknown tokens")
            except DatabaseError:  # never fail open here: any made-up token would pass
                log.exception("Forward-auth: cannot look up a token")
                return unavailable("Token store unavailable")
        plan = self.plans.get(credential.plan_id, self.default_plan) if credential else None
        if plan is None or not credential.verifies(token, self._hash_key):
            # No such token, a wrong secret, or no plan at all (none is the default).
            return UNKNOWN_TOKEN if token_prefix(token) else MALFORMED_TOKEN
        if credential.blocked:
            return BLOCKED.get(credential.blocked) or BLOCKED["payment_failed"]

        now = self.clock()
        endpoint = normal_path(environ.get("HTTP_X_FORWARDED_URI", "/"))
        limits = plan.limits_for(endpoint)
        restrictions = credential.restrictions
        if restrictions is not None:
            refusal = restrictions.refusal(environ, endpoint, now, self.client_hops)
            if refusal is not None:
                return refusal
            if restrictions.limits:
                limits = credential.with_own_limits(limits)
        if self.counters.waits and not may_wait:
            return None
        period = self._period(credential, now)
        try:
            verdict = self.counters.take(credential.account, limits, now, period, plan.concurrency, self.lease_ttl)
        except redis.RedisError as error:
            if not isinstance(error, CountersDown):  # one traceback a second, not one a call
                log.exception("Forward-auth: rate-limit counters unavailable")
            if not self.fail_open:
                return unavailable("Rate limiting unavailable")
            # Let through unchecked, but recorded (and so billed) like any call, and marked.
            request_id = self._record(environ, now, credential, endpoint, 200, unchecked=True)
            return Answer(
                200,
                [
                    *credential.identity,
                    ("X-Plan", plan.slug),
                    ("X-Request-Id", request_id),
                    ("X-RateLimit-Unchecked", "1"),
                ],
            )

        request_id = self._record(environ, now, credential, endpoint, 200 if verdict.allowed else 429)
        if not verdict.allowed:
            return self._too_many(limits, period, plan.concurrency, verdict, now)
        headers = [*credential.identity, ("X-Plan", plan.slug), ("X-Request-Id", request_id)]
        if verdict.lease:
            headers.append(("X-Lease-Id", verdict.lease))
        return Answer(200, headers)

    def _record(
        self, environ: dict, now: float, credential: Credential, endpoint: str, status: int, unchecked=False
    ) -> str:
        """Hand the call to the usage recorder; returns its request id."""
        request_id = f"{self._process_id}{next(self._request_ids):012x}"
        method = environ.get("HTTP_X_FORWARDED_METHOD", "GET")
        method = METHODS.get(method) or storable(method, 10)
        # A plain tuple in UsageEvent's order: a fifth of the named tuple's cost, and the collector untracks it.
        self.recorder.record(
            (now, credential.account, credential.token_id, endpoint, method, status, request_id, unchecked)
        )
        return request_id

    def release(self, environ: dict) -> Answer:
        """The upstream reports that the call holding this concurrency lease has finished."""
        if environ.get("REQUEST_METHOD") != "POST":
            return problem(405, "Method not allowed", "POST the lease id in X-Lease-Id.", [("Allow", "POST")])
        lease = environ.get("HTTP_X_LEASE_ID", "")[:100]
        try:
            released = self.counters.release(lease)
        except redis.RedisError:
            return unavailable("Rate limiting unavailable")
        if not released:
            return problem(404, "Unknown lease", "No such lease: it was released already or has expired.")
        return Answer(204, [])

    def _period(self, credential: Credential, now: float) -> tuple[float, float]:
        period = credential.period
        if period and period[0] <= now < period[1]:
            return period
        return self._month.at(now)

    @staticmethod
    def _too_many(limits, period, concurrency: int | None, verdict: Verdict, now: float) -> Answer:
        policies = [f'"{w.name}";q={w.quota};w={w.seconds or round(period[1] - period[0])}' for w in limits]
        if concurrency is not None:
            policies.append(f'"concurrency";q={concurrency}')
        if verdict.refused == len(limits):
            name, quota, retry = "concurrency", concurrency, 1
            detail = f"{quota} requests are already in flight; retry when one finishes."
        else:
            limit = limits[verdict.refused]
            name, quota = limit.name, limit.quota
            retry = max(1, math.ceil(limit.reset_at(verdict.oldest, period) - now))
            detail = f"The limit of {quota} requests {limit.description} is reached; retry in {retry} s."
        headers = [
            ("Retry-After", str(retry)),
            ("RateLimit-Policy", ", ".join(policies)),
            ("RateLimit", f'"{name}";r=0;t={retry}'),
        ]
        return problem(429, "Too many requests", detail, headers, window=name, limit=quota, retry_after=retry)


_service: ForwardAuth | None = None
_service_lock = threading.Lock()


def service() -> ForwardAuth:
    """This process's forward-auth service, built from the settings on first use (with the usage flusher)."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = ForwardAuth.from_settings()
                recorder.start()
    return _service


def stop_service() -> None:
    """Stop this process's service and its usage flusher (tests; the next call starts anew)."""
    global _service
    with _service_lock:
        if _service is not None:
            _service.stop()
            _service = None
        recorder.stop()
