"""Idempotency keys (owner of idempotency_keys).

A key is claimed in its own short transaction before the request runs, and
completed (or released, after a 5xx) when it ends, so concurrent requests with
the same key see "in flight" rather than waiting on a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import as_utc
from batchplane.db.dialect import insert_if_absent
from batchplane.db.models import IdempotencyKey, table

IN_FLIGHT = "in_flight"
COMPLETED = "completed"


class ClaimOutcome(Enum):
    NEW = "new"
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    response: dict[str, Any] | None = None


async def claim(
    session: AsyncSession,
    *,
    org_id: str,
    key: str,
    request_hash: str,
    now: datetime,
    ttl: timedelta,
    lease: timedelta,
) -> Claim:
    """Take the key for a new request, or say why not (replay, mismatch, in flight).

    An expired key is free again; an in-flight claim older than `lease` was
    abandoned by a crashed process and is taken over.
    """
    row = {
        "org_id": org_id,
        "key": key,
        "request_hash": request_hash,
        "state": IN_FLIGHT,
        "response": None,
        "created_at": now,
        "expires_at": now + ttl,
    }
    if await insert_if_absent(session, table(IdempotencyKey), row):
        return Claim(ClaimOutcome.NEW)
    stmt = select(IdempotencyKey).where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
    existing = (await session.execute(stmt.with_for_update())).scalar_one()
    abandoned = existing.state == IN_FLIGHT and as_utc(existing.created_at) + lease <= now
    if as_utc(existing.expires_at) <= now or abandoned:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
            .values(**{k: v for k, v in row.items() if k not in ("org_id", "key")})
        )
        return Claim(ClaimOutcome.NEW)
    if existing.request_hash != request_hash:
        return Claim(ClaimOutcome.MISMATCH)
    if existing.state == IN_FLIGHT:
        return Claim(ClaimOutcome.IN_FLIGHT)
    return Claim(ClaimOutcome.REPLAY, existing.response)


async def complete(
    session: AsyncSession, *, org_id: str, key: str, response: dict[str, Any]
) -> None:
    """Store the response that later replays of the key answer with."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
        .values(state=COMPLETED, response=response)
    )


async def release(session: AsyncSession, *, org_id: str, key: str) -> None:
    """Forget the key (the first request failed with a 5xx: a retry may succeed)."""
    await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.org_id == org_id, IdempotencyKey.key == key)
    )


async def purge_expired(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
