"""Radars (owner of radars)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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


async def deactivate(session: AsyncSession, *, org_id: str, radar_id: str, now: datetime) -> None:
    await session.execute(
        update(Radar)
        .where(Radar.org_id == org_id, Radar.id == radar_id, Radar.status == ACTIVE)
        .values(status=INACTIVE, deactivated_at=now)
    )


async def due_for_check(
    session: AsyncSession, *, kind: str, checked_before: datetime, limit: int
) -> list[Radar]:
    """Active radars of `kind` never checked, or last checked before `checked_before`."""
    stmt = (
        select(Radar)
        .where(
            Radar.kind == kind,
            Radar.status == ACTIVE,
            (Radar.last_checked_at.is_(None)) | (Radar.last_checked_at < checked_before),
        )
        .order_by(Radar.last_checked_at.is_not(None), Radar.last_checked_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def mark_checked(session: AsyncSession, *, ids: list[str], now: datetime) -> None:
    if ids:
        await session.execute(update(Radar).where(Radar.id.in_(ids)).values(last_checked_at=now))
