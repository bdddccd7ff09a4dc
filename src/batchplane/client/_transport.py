"""One logical call: metadata, deadline, idempotency key and retries, around a gRPC stub."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeVar

import grpc

from batchplane.client._exceptions import ClientError, retry_delay, translate

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# The header intake reads (intake/idempotency.py), and the one it answers replays with.
IDEMPOTENCY_KEY_HEADER: Final = "idempotency-key"
IDEMPOTENCY_REPLAYED_HEADER: Final = "idempotency-replayed"

Metadata = tuple[tuple[str, str], ...]


class _Default(Enum):
    """The client's default timeout, as opposed to None (no deadline)."""

    TIMEOUT = "default"


DEFAULT_TIMEOUT: Final = _Default.TIMEOUT
Timeout = float | None | _Default


@dataclass(frozen=True)
class RetryPolicy:
    """When and how fast a failed call is tried again.

    Only UNAVAILABLE and the in-flight idempotency conflict (409 with `retry-after`) are
    retried; every other error is raised at once. Attempt n (from 1) waits
    `min(max_backoff, initial_backoff * multiplier ** (n - 1))`, scaled by a random
    factor in `[1 - jitter, 1 + jitter]`, and at least the `retry-after` the service
    asked for. A call stops retrying once `max_attempts` were made or the next wait
    would pass its deadline.
    """

    max_attempts: int = 6
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """The wait before retry number `retry` (1 for the first retry)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return base * (1 + self.jitter * (2 * rng() - 1))

    def delay(self, retry: int, error: ClientError) -> float:
        """The wait before retry number `retry` after `error`, honouring `retry-after`."""
        return max(self.backoff(retry), retry_delay(error) or 0.0)


def new_idempotency_key() -> str:
    return f"bpc-{uuid.uuid4().hex}"


class Deadline:
    """The end of a logical call, spanning all of its attempts and waits."""

    def __init__(self, timeout_s: float | None) -> None:
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    def allows(self, wait: float) -> bool:
        """Whether a retry after `wait` seconds still has time to run."""
        return self._end is None or time.monotonic() + wait < self._end


class Transport:
    """Runs unary calls with the client's metadata, deadlines and retry policy."""

    def __init__(
        self,
        *,
        metadata: Metadata,
        timeout_s: float | None,
        retry: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.metadata = metadata
        self.timeout_s = timeout_s
        self.retry = retry
        self.sleep = sleep

    def deadline(self, timeout_s: Timeout) -> Deadline:
        return Deadline(self.timeout_s if timeout_s is DEFAULT_TIMEOUT else timeout_s)

    def call_metadata(self, idempotency_key: str | None = None) -> Metadata:
        if idempotency_key is None:
            return self.metadata
        return (*self.metadata, (IDEMPOTENCY_KEY_HEADER, idempotency_key))

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
        idempotency_key: str | None = None,
    ) -> Resp:
        """One logical call: every attempt sends the same request and key."""
        deadline = self.deadline(timeout_s)
        metadata = self.call_metadata(idempotency_key)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(request, timeout=deadline.remaining(), metadata=metadata)
            except grpc.aio.AioRpcError as error:
                failure = translate(error)
                wait = self.retry.delay(attempt, failure)
                if not self._retries(failure, attempt, deadline, wait):
                    raise failure from error
            await self.sleep(wait)

    def _retries(self, failure: ClientError, attempt: int, deadline: Deadline, wait: float) -> bool:
        return failure.retryable and attempt < self.retry.max_attempts and deadline.allows(wait)


def auth_metadata(
    *, token: str | None, api_key: str | None, organization_id: str | None
) -> Metadata:
    """`authorization: Bearer …` or `x-api-key: …`, plus `x-organization-id` for tokens
    bound to no organisation."""
    if token is not None and api_key is not None:
        raise ValueError("pass token (sent as Bearer) or api_key (sent as X-API-Key), not both")
    entries: list[tuple[str, str]] = []
    if token is not None:
        entries.append(("authorization", f"Bearer {token}"))
    if api_key is not None:
        entries.append(("x-api-key", api_key))
    if organization_id is not None:
        entries.append(("x-organization-id", organization_id))
    return tuple(entries)


def channel_options(
    retry: RetryPolicy, extra: Sequence[tuple[str, str | int]]
) -> list[tuple[str, str | int]]:
    """Reconnect backoff in step with the client's own retries, so that a retry after a
    refused connection does not find the channel still waiting out grpc's 1 s backoff."""
    ms = int(retry.initial_backoff * 1000)
    return [
        ("grpc.initial_reconnect_backoff_ms", ms),
        ("grpc.min_reconnect_backoff_ms", ms),
        ("grpc.max_reconnect_backoff_ms", int(retry.max_backoff * 1000)),
        *extra,
    ]
