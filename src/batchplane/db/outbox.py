"""The transactional outbox (owner of the `outbox_packs` and `outbox` tables).

State changes and the Kafka records announcing them are written in one
transaction, all of a transaction's records as one `outbox_packs` row; the relay
(`batchplane.bus.relay`) publishes and deletes them. `outbox` (a row per record) is
what older releases wrote: it is only drained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.api.outbox.v1 import outbox_pb2
from batchplane.core import tracing
from batchplane.db.dialect import is_postgresql, supports_skip_locked
from batchplane.db.engine import TRANSACTION_ID
from batchplane.db.keysets import values_in
from batchplane.db.models import OutboxMessage, OutboxPack, table


@dataclass(frozen=True)
class Record:
    """One Kafka record to publish."""

    topic: str
    key: bytes
    value: bytes
    # Kafka headers (ASCII text): the trace context of the span that wrote the record.
    headers: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Taken:
    """What one relay pass took: the records in publication order, and the rows
    they came from (to delete once the broker has them)."""

    records: list[Record]
    pack_ids: list[int]
    message_ids: list[int]

    @property
    def rows(self) -> int:
        return len(self.pack_ids) + len(self.message_ids)


async def add(session: AsyncSession, records: Sequence[Record], *, now: datetime) -> None:
    """Queue records for publication: one `outbox_packs` row, one round trip.

    Records without headers of their own take the current span's trace context, so
    whoever consumes them continues the trace that wrote them.
    """
    if not records:
        return
    pack = outbox_pb2.OutboxPack(headers=tracing.current_headers())
    append = pack.records.add
    for r in records:
        if r.headers:
            append(topic=r.topic, key=r.key, value=r.value, headers=r.headers)
        else:
            append(topic=r.topic, key=r.key, value=r.value)
    stmt = insert(table(OutboxPack)).values(
        records=pack.SerializeToString(), record_count=len(records), created_at=now
    )
    if is_postgresql(session):
        # The transaction's id on the way: a verified commit needs no query for it.
        xid = (await session.execute(stmt.returning(func.txid_current()))).scalar_one()
        session.info[TRANSACTION_ID] = int(xid)
    else:
        await session.execute(stmt)


def unpack(data: bytes) -> list[Record]:
    """The records of a serialized pack, in order."""
    pack = outbox_pb2.OutboxPack.FromString(data)
    shared = dict(pack.headers)
    return [
        Record(r.topic, r.key, r.value, dict(r.headers) if r.headers else shared)
        for r in pack.records
    ]


async def take(session: AsyncSession, *, packs: int, messages: int = 0) -> Taken:
    """The oldest `messages` rows of the older per-record table, then the oldest
    `packs` packs, locked so that concurrent relays skip them.

    Reads plain columns (no ORM object per row: the relay's hottest loop).
    """
    records: list[Record] = []
    message_ids: list[int] = []
    if messages:
        legacy = table(OutboxMessage).c
        stmt = (
            select(legacy.id, legacy.topic, legacy.key, legacy.value, legacy.headers)
            .order_by(legacy.id)
            .limit(messages)
        )
        for id_, topic, key, value, headers in await session.execute(_skip_locked(session, stmt)):
            message_ids.append(id_)
            records.append(Record(topic, key, value, headers or {}))
    pack_ids: list[int] = []
    if packs:
        c = table(OutboxPack).c
        oldest_packs = select(c.id, c.records).order_by(c.id).limit(packs)
        for id_, data in await session.execute(_skip_locked(session, oldest_packs)):
            pack_ids.append(id_)
            records += unpack(data)
    return Taken(records, pack_ids, message_ids)


def _skip_locked(session: AsyncSession, stmt: Select[Any]) -> Select[Any]:
    return stmt.with_for_update(skip_locked=True) if supports_skip_locked(session) else stmt


async def remove(session: AsyncSession, taken: Taken) -> None:
    """Delete exactly the rows taken, named as runs of consecutive ids (`keysets`).

    Never one range from the first id to the last: between them, on PostgreSQL, can be
    rows of transactions not committed when they were taken, or locked by another relay.
    """
    for model, ids in ((OutboxPack, taken.pack_ids), (OutboxMessage, taken.message_ids)):
        if ids:
            rows = table(model)
            await session.execute(delete(rows).where(values_in(rows.c.id, ids)))


async def queued(session: AsyncSession) -> list[Record]:
    """Every record not yet published, in publication order (tests and operators)."""
    taken = await take(session, packs=2**31 - 1, messages=2**31 - 1)
    return taken.records


async def backlog(session: AsyncSession) -> int:
    """Records not yet published."""
    packed = select(func.coalesce(func.sum(OutboxPack.record_count), 0)).scalar_subquery()
    single = select(func.count()).select_from(OutboxMessage).scalar_subquery()
    return int((await session.execute(select(packed + single))).scalar_one())


async def oldest(session: AsyncSession) -> datetime | None:
    """When the oldest record not yet published was queued (None when none is)."""
    found = [
        (await session.execute(select(func.min(model.created_at)))).scalar_one_or_none()
        for model in (OutboxPack, OutboxMessage)
    ]
    return min((when for when in found if when is not None), default=None)
