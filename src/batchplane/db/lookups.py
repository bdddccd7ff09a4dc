"""Stored lookup results and domain lists (owner of domain_lookups, domain_lists,
list_domains)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.db.dialect import insert_ignoring_conflicts, upsert
from batchplane.db.models import DomainList, DomainLookup, ListDomain, table


@dataclass(frozen=True)
class StoredLookup:
    domain: str
    technologies: list[dict[str, Any]]
    looked_up_at: datetime


async def latest(session: AsyncSession, *, domains: Sequence[str]) -> dict[str, StoredLookup]:
    """The latest stored result of each domain that has one."""
    if not domains:
        return {}
    rows = (
        await session.execute(select(DomainLookup).where(DomainLookup.domain.in_(set(domains))))
    ).scalars()
    return {r.domain: StoredLookup(r.domain, r.technologies, r.looked_up_at) for r in rows}


async def store(session: AsyncSession, *, results: Sequence[StoredLookup]) -> None:
    """Record new lookup results, replacing older ones of the same domains."""
    await upsert(
        session,
        table(DomainLookup),
        [
            {"domain": r.domain, "technologies": r.technologies, "looked_up_at": r.looked_up_at}
            for r in results
        ],
        key=["domain"],
        update=["technologies", "looked_up_at"],
    )


async def add_to_list(
    session: AsyncSession, *, org_id: str, list_id: int, domains: Sequence[str], now: datetime
) -> None:
    """Add domains to a list of the organisation, creating the list on first use."""
    await insert_ignoring_conflicts(
        session,
        table(DomainList),
        [{"org_id": org_id, "list_id": list_id, "created_at": now}],
    )
    await insert_ignoring_conflicts(
        session,
        table(ListDomain),
        [{"org_id": org_id, "list_id": list_id, "domain": d, "added_at": now} for d in domains],
    )


async def list_exists(session: AsyncSession, *, org_id: str, list_id: int) -> bool:
    return await session.get(DomainList, (org_id, list_id)) is not None


async def list_domains(session: AsyncSession, *, org_id: str, list_id: int) -> list[str]:
    stmt = (
        select(ListDomain.domain)
        .where(ListDomain.org_id == org_id, ListDomain.list_id == list_id)
        .order_by(ListDomain.added_at, ListDomain.domain)
    )
    return list((await session.execute(stmt)).scalars())
