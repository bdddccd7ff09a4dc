"""GCRA rate limiting, the same behaviour from the in-process and the Redis limiter.

Time is a fake clock advanced by hand, never slept. The Redis cases need the
server at 127.0.0.1:6379 and fail (never skip) when it is not there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from batchplane.core.errors import Unavailable
from batchplane.intake.ratelimit import (
    KEY_PREFIX,
    Decision,
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    make_rate_limiter,
)

REDIS_URL = "redis://127.0.0.1:6379/15"
REQUESTS = Limit("requests", per_minute=60)  # T = 1 s, burst 60


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Subject:
    limiter: RateLimiter
    clock: FakeClock
    key: str

    async def check(self, limit: Limit = REQUESTS, key: str | None = None) -> Decision:
        return await self.limiter.check(key or self.key, limit)

    async def admitted(self, n: int, limit: Limit = REQUESTS) -> int:
        return sum([(await self.check(limit)).allowed for _ in range(n)])


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    key = f"test-{uuid.uuid4()}"
    if request.param == "memory":
        clock = FakeClock(1_000.0)
        yield Subject(MemoryRateLimiter(clock=clock), clock, key)
        return
    # The factory's client, not a bare one: its blocking pool is what lets 200
    # concurrent checks queue (a default pool raises past 100 connections).
    clock = FakeClock(1_700_000_000.0)  # epoch seconds, as replicas would send
    limiter = make_rate_limiter(REDIS_URL, clock=clock)
    assert isinstance(limiter, RedisRateLimiter)
    try:
        yield Subject(limiter, clock, key)
    finally:
        await limiter.aclose()


async def test_burst_passes_then_the_next_waits_one_interval(subject: Subject) -> None:
    decisions = [await subject.check() for _ in range(60)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(59, -1, -1))

    denied = await subject.check()
    assert not denied.allowed
    assert denied.remaining == 0
    assert denied.retry_after_s == pytest.approx(1.0)
    assert denied.reset_after_s == pytest.approx(60.0)

    subject.clock.advance(1.0)
    assert (await subject.check()).allowed
    assert not (await subject.check()).allowed


async def test_steady_rate_never_exceeds_one_per_interval(subject: Subject) -> None:
    assert await subject.admitted(60) == 60
    pattern = []
    for _ in range(20):
        subject.clock.advance(0.5)
        pattern.append((await subject.check()).allowed)
    assert pattern == [False, True] * 10


async def test_no_second_burst_across_a_window_boundary(subject: Subject) -> None:
    # A fixed window would reset at 60 s and admit another 60 at once.
    subject.clock.advance(59.9)
    assert await subject.admitted(60) == 60
    subject.clock.advance(0.2)
    assert await subject.admitted(60) == 0
    subject.clock.advance(0.8)  # one interval after the burst
    assert await subject.admitted(60) == 1


async def test_admissions_conform_to_rate_plus_burst(subject: Subject) -> None:
    # Hammer well above the rate; every run of admissions must satisfy
    # count <= burst + elapsed / T, the GCRA conformance definition.
    limit = Limit("requests", per_minute=120, burst=4)  # T = 0.5 s
    admitted_at: list[float] = []
    for _ in range(100):
        for _ in range(4):
            if (await subject.check(limit)).allowed:
                admitted_at.append(subject.clock.now)
        subject.clock.advance(0.2)
    assert len(admitted_at) == 4 + 39  # burst, then one per 0.5 s over 19.8 s
    for i in range(len(admitted_at)):
        for j in range(i, len(admitted_at)):
            elapsed = admitted_at[j] - admitted_at[i]
            assert j - i + 1 <= 4 + elapsed / 0.5 + 1e-9


async def test_denied_requests_consume_nothing(subject: Subject) -> None:
    assert await subject.admitted(60) == 60
    retries = [(await subject.check()).retry_after_s for _ in range(50)]
    assert retries == pytest.approx([1.0] * 50)
    subject.clock.advance(1.0)
    assert await subject.admitted(5) == 1


async def test_keys_and_limits_are_independent(subject: Subject) -> None:
    bulk = Limit("bulk", per_minute=60)
    assert await subject.admitted(60) == 60
    assert not (await subject.check()).allowed

    other = await subject.check(key=f"{subject.key}-other")
    assert other.allowed and other.remaining == 59
    same_key_other_limit = await subject.check(bulk)
    assert same_key_other_limit.allowed and same_key_other_limit.remaining == 59


async def test_several_buckets_admit_together_or_not_at_all(subject: Subject) -> None:
    bulk = Limit("bulk", per_minute=60, burst=2)
    both = [(subject.key, REQUESTS), (subject.key, bulk)]

    admitted = await subject.limiter.check_all(both)
    assert [(d.allowed, d.remaining) for d in admitted] == [(True, 59), (True, 1)]
    assert all(d.allowed for d in await subject.limiter.check_all(both))

    # The bulk bucket is empty: the call is refused, and the general bucket keeps
    # the unit it would have spent.
    refused = await subject.limiter.check_all(both)
    assert [d.allowed for d in refused] == [True, False]
    assert refused[1].retry_after_s == pytest.approx(1.0)
    assert (await subject.check()).remaining == 57


async def test_smaller_burst_than_rate(subject: Subject) -> None:
    limit = Limit("bulk", per_minute=60, burst=3)
    assert [d.remaining for d in [await subject.check(limit) for _ in range(3)]] == [2, 1, 0]
    denied = await subject.check(limit)
    assert not denied.allowed and denied.retry_after_s == pytest.approx(1.0)
    assert denied.headers()["ratelimit-policy"] == '"bulk";q=3;w=60'


async def test_headers_after_one_request(subject: Subject) -> None:
    assert (await subject.check()).headers() == {
        "ratelimit-policy": '"requests";q=60;w=60',
        "ratelimit": '"requests";r=59;t=1',
    }


async def test_headers_when_denied(subject: Subject) -> None:
    assert await subject.admitted(60) == 60
    assert (await subject.check()).headers() == {
        "ratelimit-policy": '"requests";q=60;w=60',
        "ratelimit": '"requests";r=0;t=60',
        "retry-after": "1",
    }
    subject.clock.advance(0.3)  # 0.7 s to wait: rounded up, whole seconds
    headers = (await subject.check()).headers()
    assert headers["retry-after"] == "1"
    assert headers["ratelimit"] == '"requests";r=0;t=60'  # 59.7 s, rounded up


async def test_retry_after_is_a_whole_number_of_at_least_one_second(subject: Subject) -> None:
    fast = Limit("requests", per_minute=600, burst=1)  # T = 0.1 s
    assert (await subject.check(fast)).allowed
    denied = await subject.check(fast)
    assert denied.retry_after_s == pytest.approx(0.1)
    assert denied.headers()["retry-after"] == "1"

    slow = Limit("bulk", per_minute=10, burst=1)  # T = 6 s
    assert (await subject.check(slow)).allowed
    subject.clock.advance(0.5)
    denied = await subject.check(slow)
    assert denied.retry_after_s == pytest.approx(5.5)
    assert denied.headers()["retry-after"] == "6"


async def test_concurrent_checks_admit_exactly_the_burst(subject: Subject) -> None:
    limit = Limit("bulk", per_minute=60, burst=100)
    decisions = await asyncio.gather(*(subject.check(limit) for _ in range(200)))
    assert sum(d.allowed for d in decisions) == 100
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(100))


async def test_redis_key_has_a_ttl(redis_client: redis_asyncio.Redis) -> None:
    clock = FakeClock(1_700_000_000.0)
    limiter = RedisRateLimiter(redis_client, clock=clock)
    key = f"test-{uuid.uuid4()}"
    redis_key = f"{KEY_PREFIX}requests:{key}"

    await limiter.check(key, REQUESTS)
    assert 0 < await redis_client.pttl(redis_key) <= 1_000  # full again after T
    for _ in range(59):
        await limiter.check(key, REQUESTS)
    assert 59_000 < await redis_client.pttl(redis_key) <= 60_000
    assert await redis_client.get(redis_key) == b"1700000060000000"  # TAT in µs, exact


@pytest.mark.parametrize("factory", [False, True], ids=["client", "factory"])
async def test_unreachable_redis_raises_unavailable_promptly(factory: bool) -> None:
    url = "redis://127.0.0.1:1"
    limiter: RateLimiter = (
        make_rate_limiter(url)
        if factory
        else RedisRateLimiter(redis_asyncio.Redis.from_url(url, socket_connect_timeout=0.2))
    )
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as caught:
            await limiter.check("k", REQUESTS)
    finally:
        await limiter.aclose()
    assert time.monotonic() - started < 0.5
    assert caught.value.http_status == 503 and caught.value.retryable
    assert isinstance(caught.value.__cause__, RedisError)


async def test_factory_picks_the_implementation() -> None:
    assert isinstance(make_rate_limiter(None), MemoryRateLimiter)
    limiter = make_rate_limiter(REDIS_URL)
    try:
        assert isinstance(limiter, RedisRateLimiter)
        assert (await limiter.check(f"test-{uuid.uuid4()}", REQUESTS)).allowed
    finally:
        await limiter.aclose()


async def test_memory_limiter_evicts_only_full_buckets() -> None:
    clock = FakeClock(0.0)
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for _ in range(60):
        await limiter.check("hot", REQUESTS)
    for i in range(9):
        await limiter.check(f"cold-{i}", REQUESTS)
    clock.advance(2.0)  # cold buckets (TAT = 1 s) are full again; hot is not
    for i in range(5):
        await limiter.check(f"new-{i}", REQUESTS)
    assert len(limiter) <= 10
    # Kept, not reset: 2 s refilled two units, the second is being spent now.
    assert (await limiter.check("hot", REQUESTS)).remaining == 1


def test_limit_defaults() -> None:
    assert REQUESTS.capacity == 60 and REQUESTS.emission_interval_us == 1_000_000
    assert Limit("bulk", 10, burst=2).capacity == 2


@pytest.mark.parametrize(
    ("name", "per_minute", "burst", "message"),
    [
        ("", 1, None, "name"),
        ('a"b', 1, None, "name"),
        ("a\\b", 1, None, "name"),
        ("requests", 0, None, "per_minute"),
        ("requests", 60_000_001, None, "per_minute"),
        ("requests", 1, 0, "burst"),
    ],
)
def test_limit_validation(name: str, per_minute: int, burst: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limit(name, per_minute, burst)
