"""Radars (owner of radars)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.dialect import supports_skip_locked
from batchplane.db.models import Organization, Radar

ACTIVE = "active"
INACTIVE = "inactive"


async def lock_organization(session: AsyncSession, *, org_id: str) -> None:
    """Serialise radar creation per organisation (conflict check, then insert)."""
    await session.execute(
        select(Organization.id).where(Organization.id == org_id).with_for_update()
    )


async def find_active(session: AsyncSession, *, org_id: str, identity: str) -> Radar | None:
    stmt = select(Radar).where(
        Radar.org_id == org_id, Radar.identity == identity, Radar.status == ACTIVE
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none()


async def add(session: AsyncSession, *, radar: Radar) -> None:
    session.add(radar)
    await session.flush()


async def get(session: AsyncSession, *, org_id: str, radar_id: str) -> Radar | None:
    radar = await session.get(Radar, radar_id)
    return radar if radar is not None and radar.org_id == org_id else None


async def list_for_org(
    session: AsyncSession, *, org_id: str, limit: int, offset: int
) -> list[Radar]:
    stmt = (
        select(Radar)
        .where(Radar.org_id == org_id)
        .order_by(Radar.created_at.desc(), Radar.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(stmt)).scalars())


async def active_for_domain(session: AsyncSession, *, org_id: str, domain: str) -> list[Radar]:
    """The organisation's active company and contact radars about `domain`, oldest first."""
    stmt = (
        select(Radar)
        .where(
            Radar.org_id == org_id,
            Radar.status == ACTIVE,
            Radar.config["domain"].as_string() == domain,
        )
        .order_by(Radar.created_at, Radar.id)
    )
    return list((await session.execute(stmt)).scalars())


async def deactivate(session: AsyncSession, *, org_id: str, radar_id: str, now: datetime) -> None:
    await session.execute(
        update(Radar)
        .where(Radar.org_id == org_id, Radar.id == radar_id, Radar.status == ACTIVE)
        .values(status=INACTIVE, deactivated_at=now)
    )


async def claim_due(
    session: AsyncSession, *, checked_before: datetime, now: datetime, limit: int
) -> list[Radar]:
    """Active radars never checked or last checked before `checked_before`, oldest first,
    marked as checked at `now`.

    Rows are locked with SKIP LOCKED (on PostgreSQL), so two processors never claim
    the same radar for one round; a check that dies midway waits for the next round.
    """
    stmt = (
        select(Radar)
        .where(
            Radar.status == ACTIVE,
            (Radar.last_checked_at.is_(None)) | (Radar.last_checked_at < checked_before),
        )
        .order_by(Radar.last_checked_at.is_not(None), Radar.last_checked_at)
        .limit(limit)
    )
    if supports_skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True)
    due = list((await session.execute(stmt)).scalars())
    if due:
        await session.execute(
            update(Radar).where(Radar.id.in_([r.id for r in due])).values(last_checked_at=now)
        )
    return due


async def save_states(session: AsyncSession, *, states: dict[str, dict[str, Any]]) -> None:
    """Store what each radar's last check saw."""
    for radar_id, state in states.items():
        await session.execute(update(Radar).where(Radar.id == radar_id).values(state=state))
