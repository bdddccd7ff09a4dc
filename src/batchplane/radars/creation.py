"""Creating one radar: the conflict check, the charge and the insert, in one transaction.

Used by single create (intake) and by each bulk item (processor), so that their
validation, conflicts and billing can never differ.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchplane.core.clock import rfc3339
from batchplane.core.ids import new_id
from batchplane.db import billing, radars
from batchplane.db.engine import Database
from batchplane.db.models import Radar
from batchplane.radars.specs import CONTACT, INDUSTRY, FieldError, RadarSpec


class RadarConflict(Exception):
    """409: an active radar with the same configuration exists."""

    def __init__(self, conflicting_radar_id: str, field: str) -> None:
        super().__init__("a radar with this configuration already exists")
        self.conflicting_radar_id = conflicting_radar_id
        self.errors = [FieldError(field, "a radar with this configuration already exists")]


class RadarUnpaid(Exception):
    """402: the balance cannot pay for the radar; nothing was created or charged."""


async def create_radar(
    database: Database, *, org_id: str, spec: RadarSpec, credits: int, now: datetime
) -> Radar:
    async with database.transaction() as session:
        await radars.lock_organization(session, org_id=org_id)
        existing = await radars.find_active(session, org_id=org_id, identity=spec.identity)
        if existing is not None:
            raise RadarConflict(existing.id, spec.conflict_field)
        radar_id = new_id("radar")
        entry = await billing.charge(
            session,
            org_id=org_id,
            amount=credits,
            batch_id=None,
            now=now,
            note=f"radar {radar_id}",
        )
        if entry is None:
            raise RadarUnpaid("insufficient balance to create this radar")
        radar = Radar(
            id=radar_id,
            org_id=org_id,
            kind=spec.kind,
            radar_type=spec.radar_type,
            identity=spec.identity,
            config=config_of(spec),
            status=radars.ACTIVE,
            credit_entry_id=entry,
            created_at=now,
        )
        await radars.add(session, radar=radar)
    return radar


def config_of(spec: RadarSpec) -> dict[str, Any]:
    if spec.kind == CONTACT:
        return {"profile_url": spec.profile_url, "domain": spec.domain}
    if spec.kind == INDUSTRY:
        return {"keyword": spec.keyword}
    return {"domain": spec.domain, "filters": spec.filters}


def radar_json(radar: Radar) -> dict[str, Any]:
    """The single-create response (and the `data` of a `radar_created` webhook)."""
    return {
        "id": radar.id,
        "type": radar.kind,
        "radar_type": radar.radar_type,
        **radar.config,
        "status": radar.status,
        "created_at": rfc3339(radar.created_at),
    }
