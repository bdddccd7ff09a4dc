"""Enrichment records, entities and shared results (owner of enrichments, entities,
global_enrichments)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import rfc3339
from batchplane.db.dialect import insert_if_absent, upsert
from batchplane.db.models import Enrichment, Entity, GlobalEnrichment, table

PENDING = "pending"
PROCESSING = "processing"
FINISHED = "finished"
FAILED = "failed"
TIMEOUT = "timeout"
TERMINAL = frozenset({FINISHED, FAILED, TIMEOUT})


@dataclass(frozen=True)
class EnrichmentData:
    entity_id: str
    entity_type: str
    field: str
    data: Any
    updated_at: datetime


@dataclass(frozen=True)
class RecordUpdate:
    """The terminal state of one record, written by the processor or the sweeper."""

    record_id: str
    status: str
    data_found: bool | None
    data: Any
    error: str | None
    global_enrichment_id: str | None


async def latest_finished(
    session: AsyncSession, *, org_id: str, entity_id: str, field: str
) -> EnrichmentData | None:
    """The newest finished enrichment of an entity's field for the organisation."""
    stmt = (
        select(Enrichment)
        .where(
            Enrichment.org_id == org_id,
            Enrichment.entity_id == entity_id,
            Enrichment.field == field,
            Enrichment.status == FINISHED,
        )
        .order_by(Enrichment.updated_at.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        return None
    return EnrichmentData(row.entity_id, row.entity_type, row.field, row.data, row.updated_at)


# --- entities ----------------------------------------------------------------------------


async def get_entity(session: AsyncSession, *, entity_id: str) -> Entity | None:
    return await session.get(Entity, entity_id)


async def find_entity(session: AsyncSession, *, type_: str, key: str) -> Entity | None:
    stmt = select(Entity).where(Entity.type == type_, Entity.key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def register_entity(session: AsyncSession, *, type_: str, key: str, now: datetime) -> Entity:
    """The entity with this type and key, created on first use (race-free)."""
    row = {"id": str(uuid.uuid4()), "type": type_, "key": key, "created_at": now}
    await insert_if_absent(session, table(Entity), row)
    found = await find_entity(session, type_=type_, key=key)
    assert found is not None
    return found


async def entities_by_id(session: AsyncSession, *, ids: Sequence[str]) -> dict[str, Entity]:
    if not ids:
        return {}
    rows = (await session.execute(select(Entity).where(Entity.id.in_(set(ids))))).scalars()
    return {r.id: r for r in rows}


# --- records -------------------------------------------------------------------------------


async def add_records(session: AsyncSession, *, records: Sequence[Enrichment]) -> None:
    session.add_all(records)
    await session.flush()


async def latest_records(
    session: AsyncSession, *, org_id: str, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Enrichment]:
    """The newest record of each (entity_id, field) pair for the organisation."""
    if not pairs:
        return {}
    stmt = (
        select(Enrichment)
        .where(
            Enrichment.org_id == org_id,
            tuple_(Enrichment.entity_id, Enrichment.field).in_(list(set(pairs))),
        )
        .order_by(Enrichment.created_at)
    )
    latest: dict[tuple[str, str], Enrichment] = {}
    for row in (await session.execute(stmt)).scalars():
        latest[(row.entity_id, row.field)] = row  # ascending: the last one wins
    return latest


async def get_record(session: AsyncSession, *, org_id: str, record_id: str) -> Enrichment | None:
    row = await session.get(Enrichment, record_id)
    return row if row is not None and row.org_id == org_id else None


async def records_by_id(session: AsyncSession, *, ids: Sequence[str]) -> dict[str, Enrichment]:
    if not ids:
        return {}
    rows = (await session.execute(select(Enrichment).where(Enrichment.id.in_(set(ids))))).scalars()
    return {r.id: r for r in rows}


async def mark_processing(session: AsyncSession, *, ids: Sequence[str], now: datetime) -> None:
    if ids:
        await session.execute(
            update(Enrichment)
            .where(Enrichment.id.in_(list(ids)), Enrichment.status == PENDING)
            .values(status=PROCESSING, updated_at=now)
        )


async def finish_records(
    session: AsyncSession, *, updates: Sequence[RecordUpdate], now: datetime
) -> None:
    """Write terminal states; a record already terminal keeps its first state."""
    if not updates:
        return
    records = table(Enrichment)
    await session.execute(
        update(records)
        .where(
            records.c.id == bindparam("r_id"),
            # Not IN (…): an expanding parameter cannot be used with executemany.
            or_(records.c.status == PENDING, records.c.status == PROCESSING),
        )
        .values(
            status=bindparam("r_status"),
            data_found=bindparam("r_found"),
            data=bindparam("r_data", type_=records.c.data.type),
            error=bindparam("r_error"),
            global_enrichment_id=bindparam("r_global"),
            updated_at=now,
        ),
        [
            {
                "r_id": u.record_id,
                "r_status": u.status,
                "r_found": u.data_found,
                "r_data": u.data,
                "r_error": u.error,
                "r_global": u.global_enrichment_id,
            }
            for u in updates
        ],
    )


# --- results shared across organisations ---------------------------------------------------


@dataclass(frozen=True)
class SharedResult:
    id: str
    entity_id: str
    field: str
    data_found: bool
    data: Any
    fetched_at: datetime


async def shared_results(
    session: AsyncSession, *, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], SharedResult]:
    if not pairs:
        return {}
    stmt = select(GlobalEnrichment).where(
        tuple_(GlobalEnrichment.entity_id, GlobalEnrichment.field).in_(list(set(pairs)))
    )
    return {
        (r.entity_id, r.field): SharedResult(
            r.id, r.entity_id, r.field, r.data_found, r.data, r.fetched_at
        )
        for r in (await session.execute(stmt)).scalars()
    }


async def store_shared(session: AsyncSession, *, results: Sequence[SharedResult]) -> None:
    await upsert(
        session,
        table(GlobalEnrichment),
        [
            {
                "id": r.id,
                "entity_id": r.entity_id,
                "field": r.field,
                "data_found": r.data_found,
                "data": r.data,
                "fetched_at": r.fetched_at,
            }
            for r in results
        ],
        key=["entity_id", "field"],
        update=["id", "data_found", "data", "fetched_at"],
    )


def record_json(record: Enrichment, *, with_data: bool = False) -> dict[str, Any]:
    """Seed 002's enrichment object, fields in the seed's order, nulls kept."""
    body: dict[str, Any] = {
        "id": record.id,
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
        "entityId": record.entity_id,
        "entityType": record.entity_type,
        "field": record.field,
        "status": record.status,
        "error": record.error,
        "dataFound": record.data_found,
        "createdBy": record.created_by,
        "orgId": record.org_id,
        "globalEnrichmentId": record.global_enrichment_id,
        "creditTransactionId": record.credit_transaction_id,
    }
    if with_data:
        body["data"] = record.data
    return body
