"""Change signals about domains (owner of signals)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.models import Signal

TECHNOLOGY_ADDED = "technology_added"
TECHNOLOGY_REMOVED = "technology_removed"


@dataclass(frozen=True)
class SignalRecord:
    domain: str
    type: str
    data: dict[str, Any]
    detected_at: datetime
    org_id: str | None = None


async def record(session: AsyncSession, *, signals: Sequence[SignalRecord]) -> None:
    if signals:
        await session.execute(
            insert(Signal),
            [
                {
                    "domain": s.domain,
                    "org_id": s.org_id,
                    "type": s.type,
                    "data": s.data,
                    "detected_at": s.detected_at,
                }
                for s in signals
            ],
        )


async def for_domain(
    session: AsyncSession,
    *,
    domain: str,
    org_id: str,
    types: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[SignalRecord]:
    """Signals an organisation may see about `domain`, newest first."""
    stmt = select(Signal).where(
        Signal.domain == domain, or_(Signal.org_id.is_(None), Signal.org_id == org_id)
    )
    if types:
        stmt = stmt.where(Signal.type.in_(list(types)))
    if since is not None:
        stmt = stmt.where(Signal.detected_at >= since)
    stmt = stmt.order_by(Signal.detected_at.desc(), Signal.id.desc()).limit(limit)
    return [
        SignalRecord(r.domain, r.type, r.data, r.detected_at, r.org_id)
        for r in (await session.execute(stmt)).scalars()
    ]
