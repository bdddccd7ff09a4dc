"""Per-token rate limiting with GCRA (generic cell rate algorithm).

Plans give `requests_per_minute` and `bulk_submissions_per_minute`; each is a
`Limit` checked against a key (typically the token id). Over the limit the
caller answers 429 with `Decision.headers()`: `Retry-After` plus the IETF
`RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).

Why GCRA rather than a fixed window: a fixed window lets a client send a full
quota just before the boundary and another just after, i.e. twice the limit
in a moment. GCRA keeps one timestamp per key, the theoretical arrival time
(TAT), and admits a request only if it does not run ahead of the steady rate
by more than the burst tolerance, so no boundary exists to exploit.

Parameters, for a `Limit(per_minute=n, burst=b)`:

* emission interval ``T = 60 s / n``: the steady spacing between requests;
* tolerance ``tau = T * (b - 1)``: how far ahead of the steady rate a client
  may run. An idle key therefore admits ``b`` requests at once, then one per
  ``T``. ``burst`` defaults to ``per_minute``: a full minute's allowance may be
  spent at once, but never more than ``n + k`` requests in any window of ``k``
  minutes.

Both limiters share the arithmetic, done in integer microseconds so that the
in-process and Redis implementations agree exactly and no float rounding (or
Lua's number-to-integer conversion in replies) shifts a decision.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from batchplane.core.errors import Unavailable

__all__ = [
    "Decision",
    "Limit",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "make_rate_limiter",
]

log = logging.getLogger(__name__)

_US_PER_S: Final = 1_000_000
_WINDOW_S: Final = 60
KEY_PREFIX: Final = "batchplane:rl:"


@dataclass(frozen=True)
class Limit:
    """A named rate: `per_minute` requests a minute, up to `burst` at once.

    `name` is the policy name shown in the headers (e.g. "requests", "bulk")
    and also separates buckets, so one key may be checked against several
    limits. `burst` defaults to `per_minute` (a minute's allowance at once).
    """

    name: str
    per_minute: int
    burst: int | None = None

    def __post_init__(self) -> None:
        # The name travels inside a structured-field string; refuse anything
        # that would need escaping rather than emit a malformed header.
        if not self.name or not all(" " <= c <= "~" and c not in '"\\' for c in self.name):
            raise ValueError(f"invalid rate limit name: {self.name!r}")
        # T is kept in whole microseconds; it must not round down to zero.
        if not 1 <= self.per_minute <= _WINDOW_S * _US_PER_S:
            raise ValueError("per_minute must be between 1 and 60,000,000")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be at least 1")

    @property
    def capacity(self) -> int:
        """Requests an idle key may make at once (`burst`, else `per_minute`)."""
        return self.per_minute if self.burst is None else self.burst

    @property
    def emission_interval_us(self) -> int:
        """T, the steady spacing between requests, in microseconds."""
        return _WINDOW_S * _US_PER_S // self.per_minute


@dataclass(frozen=True)
class Decision:
    """The outcome of one `RateLimiter.check`.

    `remaining`: requests that would be admitted right now.
    `reset_after_s`: seconds until the bucket is full again (TAT - now).
    `retry_after_s`: 0 when allowed, else seconds until a request would pass.
    """

    allowed: bool
    limit: Limit
    remaining: int
    reset_after_s: float
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """Response headers (lower-case: they travel as gRPC metadata).

        E.g. ``ratelimit-policy: "requests";q=60;w=60`` and
        ``ratelimit: "requests";r=59;t=1``, plus ``retry-after: 1`` (whole
        seconds, at least 1) when the request was refused.
        """
        name = self.limit.name
        headers = {
            "ratelimit-policy": f'"{name}";q={self.limit.capacity};w={_WINDOW_S}',
            "ratelimit": (
                f'"{name}";r={max(self.remaining, 0)};t={max(math.ceil(self.reset_after_s), 0)}'
            ),
        }
        if not self.allowed:
            headers["retry-after"] = str(max(math.ceil(self.retry_after_s), 1))
        return headers


class RateLimiter(Protocol):
    """Checks one request against a limit."""

    async def check(self, key: str, limit: Limit) -> Decision:
        """Admit or refuse one request for `key`.

        An admitted request consumes one unit; a refused one consumes nothing.
        """
        ...

    async def check_all(self, checks: Sequence[tuple[str, Limit]]) -> list[Decision]:
        """Admit one request against every (key, limit) bucket, or against none.

        Admitted when every bucket admits it, and then each consumes one unit; refused
        when any refuses, and then none consumes anything (a submission refused by its
        bulk bucket does not use up the caller's general one). One decision per bucket,
        in order; the buckets must be distinct.
        """
        ...

    async def ping(self) -> None:
        """Raise if the limiter's store cannot be reached (readiness)."""
        ...

    async def aclose(self) -> None:
        """Release resources (connections); the limiter is unusable afterwards."""
        ...


def _gcra(tat_us: int, now_us: int, limit: Limit) -> tuple[bool, int, int, int, int]:
    """One GCRA step: (allowed, new TAT, remaining, reset µs, retry µs).

    The Lua script in `RedisRateLimiter` mirrors this line for line.
    """
    period = limit.emission_interval_us
    capacity_us = period * limit.capacity  # tau + T
    tat = max(tat_us, now_us)
    new_tat = tat + period
    allow_at = new_tat - capacity_us
    if now_us < allow_at:
        return False, tat, 0, tat - now_us, allow_at - now_us
    remaining = (capacity_us - (new_tat - now_us)) // period
    return True, new_tat, remaining, new_tat - now_us, 0


def _decision(
    limit: Limit, allowed: bool, remaining: int, reset_us: int, retry_us: int
) -> Decision:
    return Decision(
        allowed=allowed,
        limit=limit,
        remaining=remaining,
        reset_after_s=reset_us / _US_PER_S,
        retry_after_s=retry_us / _US_PER_S,
    )


class MemoryRateLimiter:
    """In-process GCRA limiter for the embedded (single-replica) stack.

    `clock` returns monotonic seconds. `check` never awaits, so under asyncio
    each call is atomic. Memory is bounded: once more than `max_keys` buckets
    exist, buckets whose TAT has passed (i.e. full again, indistinguishable
    from absent) are dropped. Active buckets are never dropped, since that
    would hand their owners a fresh burst.
    """

    def __init__(
        self, *, clock: Callable[[], float] | None = None, max_keys: int = 100_000
    ) -> None:
        self._clock = clock or time.monotonic
        self._max_keys = max_keys
        # Sweep threshold; grows when a sweep frees little so sweeps stay amortised O(1).
        self._sweep_at = max_keys
        self._tats: dict[tuple[str, str], int] = {}

    async def check(self, key: str, limit: Limit) -> Decision:
        """Admit or refuse one request for `key` against `limit`."""
        return (await self.check_all([(key, limit)]))[0]

    async def check_all(self, checks: Sequence[tuple[str, Limit]]) -> list[Decision]:
        """Admit one request against every bucket or none (see `RateLimiter`)."""
        now_us = round(self._clock() * _US_PER_S)
        steps = [
            (
                (limit.name, key),
                limit,
                _gcra(self._tats.get((limit.name, key), now_us), now_us, limit),
            )
            for key, limit in checks
        ]
        if all(step[0] for _, _, step in steps):
            for bucket, _, step in steps:
                self._tats[bucket] = step[1]
            if len(self._tats) > self._sweep_at:
                self._sweep(now_us)
        return [
            _decision(limit, allowed, remaining, reset_us, retry_us)
            for _, limit, (allowed, _, remaining, reset_us, retry_us) in steps
        ]

    def _sweep(self, now_us: int) -> None:
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now_us}
        self._sweep_at = max(self._max_keys, 2 * len(self._tats))

    def __len__(self) -> int:
        return len(self._tats)

    async def ping(self) -> None:
        """Always reachable: it lives in this process."""

    async def aclose(self) -> None:
        """Nothing to release."""


# KEYS: the buckets; ARGV: now µs, then T µs and capacity per bucket. Every bucket is
# decided first; new TATs are stored only when all admit (all or nothing, atomically).
# Replies are strings because Redis truncates Lua numbers to integers and `%.0f` keeps
# 16-digit epoch microseconds exact where Lua's tostring (%.14g) would not.
_GCRA_LUA: Final = """
local now = tonumber(ARGV[1])
local replies, new_tats, admitted = {}, {}, true
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[2 * i])
  local capacity_us = period * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or ARGV[1])
  if tat < now then tat = now end
  local new_tat = tat + period
  local allow_at = new_tat - capacity_us
  if now < allow_at then
    admitted = false
    replies[i] = {'0', '0', string.format('%.0f', tat - now), string.format('%.0f', allow_at - now)}
  else
    new_tats[i] = new_tat
    local remaining = math.floor((capacity_us - (new_tat - now)) / period)
    replies[i] = {'1', string.format('%.0f', remaining), string.format('%.0f', new_tat - now), '0'}
  end
end
if admitted then
  for i, key in ipairs(KEYS) do
    local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
    redis.call('SET', key, string.format('%.0f', new_tats[i]), 'PX', string.format('%.0f', ttl_ms))
  end
end
return replies
"""


class RedisRateLimiter:
    """GCRA limiter shared by all intake replicas through Redis.

    One Lua script reads the TATs, decides and stores the new TATs atomically,
    with a TTL equal to the time until the bucket is full again, so idle keys
    vanish. `now` comes from `clock` (epoch seconds) and is passed in as an
    argument rather than read from Redis: tests can inject time, and replicas
    agree as long as their clocks are NTP-synchronised (skew of a few ms only
    shifts a decision by that much). Keys are
    ``batchplane:rl:<limit name>:<key>``. Any Redis failure raises
    `Unavailable` (503, retryable).
    """

    def __init__(
        self, client: redis_asyncio.Redis, *, clock: Callable[[], float] | None = None
    ) -> None:
        self._client = client
        self._clock = clock or time.time
        self._script = client.register_script(_GCRA_LUA)

    async def check(self, key: str, limit: Limit) -> Decision:
        """Admit or refuse one request for `key` against `limit`."""
        return (await self.check_all([(key, limit)]))[0]

    async def check_all(self, checks: Sequence[tuple[str, Limit]]) -> list[Decision]:
        """Admit one request against every bucket or none, in one script call (one
        round trip to Redis however many buckets)."""
        now_us = round(self._clock() * _US_PER_S)
        args: list[int] = [now_us]
        for _, limit in checks:
            args += [limit.emission_interval_us, limit.capacity]
        try:
            replies: Any = await self._script(
                keys=[f"{KEY_PREFIX}{limit.name}:{key}" for key, limit in checks], args=args
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limiter: redis unavailable: %s", exc)
            raise Unavailable("rate limiter unavailable") from exc
        decisions = []
        for (_, limit), reply in zip(checks, replies, strict=True):
            allowed, remaining, reset_us, retry_us = (int(v) for v in reply)
            decisions.append(_decision(limit, allowed == 1, remaining, reset_us, retry_us))
        return decisions

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        """Close the Redis client (and its pool, if the client owns it)."""
        await self._client.aclose()


def make_rate_limiter(
    redis_url: str | None, *, clock: Callable[[], float] | None = None
) -> RateLimiter:
    """A `RedisRateLimiter` for `redis_url`, else a `MemoryRateLimiter`.

    `clock` must be epoch seconds for Redis and monotonic seconds for memory.

    A rate-limit check sits on every request, so a sick Redis should produce
    a quick 503, not a hang: short socket timeouts and a single retry (which
    covers a pooled connection gone stale after a Redis restart). The pool
    blocks (up to a second) rather than failing when all its connections are
    busy, so a burst of concurrent requests queues instead of erroring.
    Options in the URL's query string override these defaults.
    """
    if not redis_url:
        return MemoryRateLimiter(clock=clock)
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=64,
        timeout=1.0,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
    )
    return RedisRateLimiter(redis_asyncio.Redis.from_pool(pool), clock=clock)
