"""The transactional outbox (owner of the outbox table).

State changes and the Kafka records announcing them are written in one
transaction; the relay (`batchplane.bus.relay`) publishes and deletes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core import tracing
from batchplane.db.dialect import supports_skip_locked
from batchplane.db.keysets import values_in
from batchplane.db.models import OutboxMessage, table


@dataclass(frozen=True)
class Record:
    """One Kafka record to publish."""

    topic: str
    key: bytes
    value: bytes
    # Kafka headers (ASCII text): the trace context of the span that wrote the record.
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StoredRecord:
    id: int
    record: Record


async def add(session: AsyncSession, records: Sequence[Record], *, now: datetime) -> None:
    """Queue records for publication, in one round trip.

    Records without headers of their own take the current span's trace context, so
    whoever consumes them continues the trace that wrote them.
    """
    if not records:
        return
    context = tracing.current_headers() or None
    # A Core INSERT of many parameter sets: the ORM's bulk insert costs more per row.
    await session.execute(
        insert(table(OutboxMessage)),
        [
            {
                "topic": r.topic,
                "key": r.key,
                "value": r.value,
                "headers": dict(r.headers) or context,
                "created_at": now,
            }
            for r in records
        ],
    )


async def take(session: AsyncSession, *, limit: int) -> list[StoredRecord]:
    """The oldest records, locked so that concurrent relays skip them.

    Reads plain columns (no ORM object per record: the relay's hottest loop).
    """
    messages = table(OutboxMessage)
    c = messages.c
    stmt = select(c.id, c.topic, c.key, c.value, c.headers).order_by(c.id).limit(limit)
    if supports_skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return [
        StoredRecord(id_, Record(topic, key, value, headers or {}))
        for id_, topic, key, value, headers in await session.execute(stmt)
    ]


async def remove(session: AsyncSession, *, ids: Sequence[int]) -> None:
    """Delete exactly these records, named as runs of consecutive ids (`keysets`).

    Never one range from the first id to the last: between them, on PostgreSQL, can be
    records of transactions not committed when they were taken, or locked by another relay.
    """
    if ids:
        messages = table(OutboxMessage)
        await session.execute(delete(messages).where(values_in(messages.c.id, ids)))


async def backlog(session: AsyncSession) -> int:
    """Records not yet published."""
    return int(
        (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    )


async def oldest(session: AsyncSession) -> datetime | None:
    """When the oldest record not yet published was queued (None when none is)."""
    return (await session.execute(select(func.min(OutboxMessage.created_at)))).scalar_one_or_none()
