"""Idempotency-Key semantics for every POST that creates or runs a batch (contract section 2).

* same key, same body (canonical JSON) → the first response again, with
  `Idempotency-Replayed: true`; nothing re-executed, nothing re-metered;
* same key, other body (or another route) → 422 `idempotency_key_reuse`;
* same key while the first request runs → 409 `idempotency_conflict`;
* a first request that failed with a 5xx leaves the key free;
* keys are per organisation and expire after the configured TTL (24 h).

A response is stored as what produced it (the protobuf message and its HTTP
status and headers, or the error), so a replay is byte-equal through the gateway.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import grpc
import orjson
from google.protobuf.message import Message

from batchplane.core.clock import Clock
from batchplane.core.errors import BatchplaneError, Conflict, InvalidRequest
from batchplane.db import idempotency
from batchplane.db.engine import Database
from batchplane.intake.auth import Metadata, metadata_value
from batchplane.intake.guard import Admitted
from batchplane.intake.wire_errors import send_http_status

M = TypeVar("M", bound=Message)

KEY_HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotency-replayed"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Reply(Generic[M]):
    """A successful answer: the message, its HTTP status and extra headers."""

    message: M
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


def request_fingerprint(route: str, request: Message, http_body: bytes | None) -> str:
    """SHA-256 over the route and the request: canonical JSON for HTTP bodies, so that
    whitespace and key order do not matter; deterministic protobuf for gRPC callers."""
    digest = hashlib.sha256(route.encode() + b"\0")
    if http_body is not None:
        try:
            digest.update(orjson.dumps(orjson.loads(http_body), option=orjson.OPT_SORT_KEYS))
        except orjson.JSONDecodeError:
            digest.update(http_body)  # malformed: compare the bytes themselves
    else:
        digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


def idempotency_key(metadata: Metadata) -> str | None:
    key = metadata_value(metadata, KEY_HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return key


class IdempotencyGate:
    """Runs a request at most once per (organisation, key) and replays its answer."""

    def __init__(
        self, database: Database, *, clock: Clock, ttl: timedelta, lease: timedelta
    ) -> None:
        self._database = database
        self._clock = clock
        self._ttl = ttl
        self._lease = lease

    async def run(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        admitted: Admitted,
        *,
        fingerprint: str,
        response_type: type[M],
        produce: Callable[[], Awaitable[Reply[M]]],
    ) -> M:
        key = idempotency_key(context.invocation_metadata() or ())
        if key is None:
            reply = await _with_headers(produce, admitted.headers)
            await send_http_status(context, reply.status, {**reply.headers, **admitted.headers})
            return reply.message
        org_id = admitted.caller.org_id
        async with self._database.transaction() as session:
            claim = await idempotency.claim(
                session,
                org_id=org_id,
                key=key,
                request_hash=fingerprint,
                now=self._clock.now(),
                ttl=self._ttl,
                lease=self._lease,
            )
        if claim.outcome is idempotency.ClaimOutcome.MISMATCH:
            raise InvalidRequest(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reuse",
                headers=admitted.headers,
            )
        if claim.outcome is idempotency.ClaimOutcome.IN_FLIGHT:
            raise Conflict(
                "a request with this Idempotency-Key is still in flight; retry later",
                code="idempotency_conflict",
                headers={**admitted.headers, "retry-after": "1"},
            )
        if claim.outcome is idempotency.ClaimOutcome.REPLAY:
            return await self._replay(context, claim.response or {}, admitted, response_type)
        return await self._first(context, org_id, key, admitted, produce)

    async def _first(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        org_id: str,
        key: str,
        admitted: Admitted,
        produce: Callable[[], Awaitable[Reply[M]]],
    ) -> M:
        headers = {**admitted.headers, REPLAYED_HEADER: "false"}
        try:
            reply = await _with_headers(produce, headers)
        except BatchplaneError as error:
            if error.http_status >= 500:
                await self._release(org_id, key)
            else:
                await self._store(org_id, key, _stored_error(error))
            raise
        except BaseException:
            await self._release(org_id, key)
            raise
        await self._store(org_id, key, _stored_reply(reply))
        await send_http_status(context, reply.status, {**reply.headers, **headers})
        return reply.message

    async def _replay(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        stored: dict[str, Any],
        admitted: Admitted,
        response_type: type[M],
    ) -> M:
        headers = {**stored.get("headers", {}), **admitted.headers, REPLAYED_HEADER: "true"}
        if stored.get("kind") == "error":
            raise BatchplaneError(
                stored["message"],
                code=stored["code"],
                http_status=stored["status"],
                extra=stored.get("extra"),
                headers=headers,
            )
        await send_http_status(context, int(stored["status"]), headers)
        return response_type.FromString(base64.b64decode(stored["message"]))

    async def _store(self, org_id: str, key: str, response: dict[str, Any]) -> None:
        async with self._database.transaction() as session:
            await idempotency.complete(session, org_id=org_id, key=key, response=response)

    async def _release(self, org_id: str, key: str) -> None:
        async with self._database.transaction() as session:
            await idempotency.release(session, org_id=org_id, key=key)

    async def purge_expired(self) -> int:
        async with self._database.transaction() as session:
            return await idempotency.purge_expired(session, now=self._clock.now())


async def _with_headers(
    produce: Callable[[], Awaitable[Reply[M]]], headers: Mapping[str, str]
) -> Reply[M]:
    """Run `produce`; errors it raises carry the call's headers (rate limits, replay)."""
    try:
        return await produce()
    except BatchplaneError as error:
        error.headers = {**headers, **error.headers}
        raise


def _stored_reply(reply: Reply[Any]) -> dict[str, Any]:
    return {
        "kind": "reply",
        "status": reply.status,
        "headers": dict(reply.headers),
        "message": base64.b64encode(reply.message.SerializeToString()).decode(),
    }


def _stored_error(error: BatchplaneError) -> dict[str, Any]:
    own_headers = {k: v for k, v in error.headers.items() if not k.startswith("ratelimit")}
    own_headers.pop(REPLAYED_HEADER, None)
    return {
        "kind": "error",
        "status": error.http_status,
        "code": error.code,
        "message": error.message,
        "extra": error.extra,
        "headers": own_headers,
    }
