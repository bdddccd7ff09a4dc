"""Enrichment records (owner of enrichments)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.models import Enrichment

FINISHED = "finished"


@dataclass(frozen=True)
class EnrichmentData:
    entity_id: str
    entity_type: str
    field: str
    data: Any
    updated_at: datetime


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
