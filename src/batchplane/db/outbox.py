"""The transactional outbox (owner of the outbox table).

State changes and the Kafka records announcing them are written in one
transaction; the relay (`batchplane.bus.relay`) publishes and deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.dialect import supports_skip_locked
from batchplane.db.models import OutboxMessage


@dataclass(frozen=True)
class Record:
    """One Kafka record to publish."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class StoredRecord:
    id: int
    record: Record


async def add(session: AsyncSession, records: Sequence[Record], *, now: datetime) -> None:
    """Queue records for publication, in one round trip."""
    if not records:
        return
    await session.execute(
        insert(OutboxMessage),
        [{"topic": r.topic, "key": r.key, "value": r.value, "created_at": now} for r in records],
    )


async def take(session: AsyncSession, *, limit: int) -> list[StoredRecord]:
    """The oldest records, locked so that concurrent relays skip them."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id).limit(limit)
    if supports_skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = (await session.execute(stmt)).scalars()
    return [StoredRecord(row.id, Record(row.topic, row.key, row.value)) for row in rows]


async def remove(session: AsyncSession, *, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))


async def backlog(session: AsyncSession) -> int:
    """Records not yet published."""
    return int(
        (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    )
