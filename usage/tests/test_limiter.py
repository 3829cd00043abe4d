"""The rate-limit decision, the same suite against process memory and Redis."""

import random
import socket
import threading
import time

import pytest
import redis
from django.conf import settings

from billing.models import Plan, Window
from usage.limiter import SLICES, Limit, MemoryCounters, RedisCounters

PERIOD = (0.0, 10_000_000.0)  # the billing period, for month windows


def minute(quota: int) -> Limit:
    return Limit("minute", "minute", quota)


def take(counters, windows, now, concurrency=None, account=1, period=PERIOD):
    # Equal limits as one tuple, as forward-auth passes a plan's: memory counters keep them current between calls.
    limits = SAME_LIMITS.setdefault(
        tuple((limit.name, limit.seconds, limit.quota) for limit in windows), tuple(windows)
    )
    return counters.take(account, limits, now, period, concurrency, lease_ttl=30)


SAME_LIMITS: dict[tuple, tuple[Limit, ...]] = {}


def test_an_unknown_window_fails_loudly_instead_of_counting_as_another():
    with pytest.raises(ValueError):
        Limit("fortnight", "fortnight", 5)


@pytest.mark.parametrize("window", Window)
def test_every_window_a_plan_can_set_has_a_length_and_a_plan_field(window):
    assert Limit(window, window, 1).seconds == window.seconds
    assert window in Plan(per_minute=1, per_hour=1, per_day=1, per_month=1).window_limits()


def test_the_request_over_the_quota_is_refused(counters):
    assert [take(counters, [minute(3)], 10.0).allowed for _ in range(4)] == [True, True, True, False]


def test_counts_are_per_account(counters):
    for _ in range(3):
        take(counters, [minute(3)], 10.0, account=1)
    assert take(counters, [minute(3)], 10.0, account=2).allowed


def test_a_refused_request_consumes_no_quota_in_any_window(counters):
    now, hour = 1000.0, Limit("hour", "hour", 5)
    for _ in range(3):
        assert take(counters, [minute(3), hour], now).allowed
    for _ in range(10):  # refused by the minute window: the hour window must not move
        assert not take(counters, [minute(3), hour], now).allowed
    results = [take(counters, [minute(3), hour], now + 65) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    assert results[-1].refused == 1  # the hour window: 3 + 2 = 5


def test_no_rolling_minute_ever_holds_more_than_the_quota(counters):
    rng = random.Random(7)
    quota, times, now = 10, [], 5000.0
    for _ in range(600):
        now += rng.expovariate(1 / 2.0)  # bursts and lulls, about 30 a minute offered
        if take(counters, [minute(quota)], now).allowed:
            times.append(now)
    assert all(sum(1 for t in times if start <= t < start + 60) <= quota for start in times)
    assert len(times) > 0.8 * quota * (now - 5000) / 60  # and it does let the quota through


def test_the_fixed_window_boundary_burst_is_refused(counters):
    """The seed's fixed minute lets 2x the limit through around :00; a rolling window does not."""
    quota = 10
    before = [take(counters, [minute(quota)], 119.5).allowed for _ in range(quota)]
    after = [take(counters, [minute(quota)], 120.5).allowed for _ in range(quota)]
    assert all(before) and not any(after)


def test_a_client_running_flat_out_gets_the_quota_less_at_most_one_slice(counters):
    quota, allowed, now = 60, 0, 0.0
    while now < 600:
        allowed += take(counters, [minute(quota)], now).allowed
        now += 0.05
    # Ten minutes at 20 requests/s against 60/min: exactly 60 per rolling minute at best.
    assert quota * 10 * SLICES / (SLICES + 1) - quota <= allowed <= quota * 10


def test_the_refusal_names_the_oldest_bucket_so_the_retry_time_is_known(counters):
    take(counters, [minute(2)], 30.0)
    take(counters, [minute(2)], 45.0)
    verdict = take(counters, [minute(2)], 50.0)
    assert not verdict.allowed and verdict.refused == 0
    assert verdict.oldest == 30 and minute(2).reset_at(verdict.oldest, PERIOD) == 91  # 30 s + 61 buckets of 1 s


def test_a_billing_period_counter_resets_when_the_period_changes(counters):
    month = Limit("month", "month", 2)
    assert [take(counters, [month], 1005.0, period=(1000.0, 2000.0)).allowed for _ in range(3)] == [True, True, False]
    verdict = take(counters, [month], 1999.0, period=(1000.0, 2000.0))
    assert not verdict.allowed and month.reset_at(verdict.oldest, (1000.0, 2000.0)) == 2000.0
    assert take(counters, [month], 2001.0, period=(2000.0, 3000.0)).allowed


def test_concurrency_leases_limit_calls_in_flight_until_released_or_expired(counters):
    first = take(counters, [], 1.0, concurrency=2)
    second = take(counters, [], 1.0, concurrency=2)
    third = take(counters, [], 1.0, concurrency=2)
    assert first.allowed and second.allowed and not third.allowed and third.refused == 0
    assert counters.release(first.lease)
    assert not counters.release(first.lease)  # once
    assert take(counters, [], 2.0, concurrency=2).allowed
    assert take(counters, [], 31.5, concurrency=2).allowed  # the others expired after 30 s


def test_a_refused_concurrency_lease_consumes_no_window_quota(counters):
    take(counters, [minute(5)], 1.0, concurrency=1)
    assert not take(counters, [minute(5)], 1.0, concurrency=1).allowed
    assert [take(counters, [minute(5)], 1.0).allowed for _ in range(5)] == [True] * 4 + [False]


def test_memory_counters_are_exact_under_threads():
    counters = MemoryCounters()
    allowed = []

    def hammer():
        allowed.extend(take(counters, [minute(500)], 10.0).allowed for _ in range(200))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 500


def test_redis_counters_are_exact_across_processes():
    """Two independent clients (as two processes or replicas would be) share one count."""
    first, second = RedisCounters(settings.REDIS_URL), RedisCounters(settings.REDIS_URL)
    first._redis.flushdb()
    results = [take(client, [minute(7)], 10.0).allowed for client in [first, second] * 5]
    assert sum(results) == 7
    lease = take(first, [], 1.0, concurrency=1).lease
    assert not take(second, [], 1.0, concurrency=1).allowed
    assert second.release(lease)


def test_redis_counts_written_before_hashes_kept_a_total_still_count():
    """After the upgrade, the calls already in the window (buckets without a total) are not forgotten."""
    counters = RedisCounters(settings.REDIS_URL)
    counters._redis.flushdb()
    now = 1_000.0  # minute buckets are a second long: bucket 1000
    counters._redis.hset("rl:{1}:minute", mapping={"999": 3, "900": 2})  # in the window; left it
    assert [take(counters, [minute(5)], now).allowed for _ in range(3)] == [True, True, False]
    assert counters._redis.hget("rl:{1}:minute", "900") is None


def test_after_redis_fails_it_is_not_asked_again_for_a_second():
    """A Redis that takes connections and never answers costs one decision its timeout, not every one."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        counters = RedisCounters(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        elapsed = []
        for pause in (0, 0, 1.1):
            time.sleep(pause)
            started = time.monotonic()
            with pytest.raises(redis.RedisError):
                take(counters, [minute(5)], 10.0)
            elapsed.append(time.monotonic() - started)
    assert elapsed[0] >= 0.4 and elapsed[1] < 0.05 and elapsed[2] >= 0.4


def test_idle_memory_counters_are_forgotten():
    counters = MemoryCounters()
    take(counters, [minute(5)], 10.0, concurrency=3)
    counters.sweep(10.0 + 30)
    assert counters._counts and counters._leases
    counters.sweep(10.0 + 100)
    assert not counters._counts and not counters._leases and not counters._current


@pytest.mark.parametrize("same_tuple", [True, False])
def test_limits_checked_in_turn_share_their_windows_exactly(counters, same_tuple):
    """An account calling two endpoints in turn: the plan's windows count both, whichever tuple comes."""
    plain = (minute(6),)
    with_endpoint = (plain[0], Limit("/v1/*/summarization per minute", "minute", 2))
    limits = lambda both: with_endpoint if both else plain  # noqa: E731
    if not same_tuple:
        limits = lambda both: tuple(with_endpoint if both else plain)  # noqa: E731
    now = 100.0
    allowed = [counters.take(1, limits(n % 2), now + n * 0.1, PERIOD, None, 30).allowed for n in range(10)]
    assert allowed == [True] * 5 + [False, True, False, False, False]  # summaries: 2 a minute; all: 6


def test_counts_stay_whole_when_idle_counters_are_forgotten_between_calls():
    counters, limits = MemoryCounters(), (minute(3), Limit("hour", "hour", 3))
    assert counters.take(1, limits, 10.0, PERIOD, None, 30).allowed
    counters.sweep(10.0 + 62)  # the minute's counter has expired, the hour's has not
    assert [counters.take(1, limits, 72.5, PERIOD, None, 30).allowed for _ in range(3)] == [True, True, False]
    assert counters.take(1, limits, 72.5, PERIOD, None, 30).refused == 1  # by the hour: 1 + 2


def test_a_billing_period_extended_keeps_its_count_through_a_sweep():
    """A trial extended: the same period start, a later end. The month's count must not be swept at the old end."""
    counters, month = MemoryCounters(), (Limit("month", "month", 5),)
    allowed = [counters.take(1, month, 10.0, (0.0, 1000.0), None, 30).allowed for _ in range(3)]
    allowed.append(counters.take(1, month, 900.0, (0.0, 5000.0), None, 30).allowed)
    counters.sweep(1001.0)
    allowed += [counters.take(1, month, 1002.0, (0.0, 5000.0), None, 30).allowed for _ in range(4)]
    assert allowed == [True] * 5 + [False] * 3
