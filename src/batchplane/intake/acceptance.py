"""The one way an async batch is accepted, whatever its family.

Inside the caller's transaction: store the batch and its items, queue the
`BatchAccepted` event and its work records through the outbox, meter one usage
unit per item against the monthly quota (429 `quota_exceeded`), and charge the
credits (402). Any refusal raises, and the rollback leaves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.records import event_record, work_records
from batchplane.core import metrics
from batchplane.core.errors import PaymentRequired
from batchplane.core.plans import Plan
from batchplane.core.settings import KafkaSettings
from batchplane.db import batches, billing, outbox
from batchplane.db.engine import after_commit
from batchplane.db.models import Batch
from batchplane.intake.auth import Caller
from batchplane.intake.metering import meter_or_refuse


@dataclass(frozen=True)
class Accepted:
    batch: Batch
    # Ledger entry of the charge (enrichment's `creditTransactionId`).
    charge_entry_id: int


async def accept_batch(
    session: AsyncSession,
    *,
    caller: Caller,
    plan: Plan,
    family: str,
    inputs: list[str],
    params: dict[str, Any],
    unit_credits: int,
    metered_units: int | None = None,
    kafka: KafkaSettings,
    now: datetime,
    retry_of: int | None = None,
) -> Accepted:
    """Store, meter, charge and queue one batch; `metered_units` defaults to its items."""
    cost = unit_credits * len(inputs)
    batch = await batches.create_batch(
        session,
        org_id=caller.org_id,
        family=family,
        inputs=inputs,
        params={**params, "unit_credits": unit_credits},
        created_by=caller.user_id,
        credits_charged=cost,
        now=now,
        retry_of=retry_of,
    )
    accepted = event_record(
        kafka.events_topic,
        events_pb2.BatchAccepted(item_count=len(inputs), credits_charged=cost),
        org_id=caller.org_id,
        batch_id=batch.id,
        family=family,
        now=now,
    )
    work = work_records(
        kafka.work_topic,
        batch_id=batch.id,
        org_id=caller.org_id,
        family=family,
        item_count=len(inputs),
    )
    await outbox.add(session, [accepted, *work], now=now)
    # The quota and the balance are rows every batch of the organisation updates:
    # they are taken last, so each batch holds their locks for the fewest round trips
    # (its other concurrent batches queue on them until it commits).
    units = len(inputs) if metered_units is None else metered_units
    await meter_or_refuse(session, caller.org_id, plan, units, now)
    # Families that charge per item later (radars, when each is created) pass 0.
    entry = (
        0
        if cost == 0
        else await billing.charge(
            session,
            org_id=caller.org_id,
            amount=cost,
            batch_id=batch.id,
            now=now,
            note=f"{family} batch of {len(inputs)} items",
        )
    )
    if entry is None:
        raise PaymentRequired(
            f"insufficient credits: this batch costs {cost} credits",
            extra={"required_credits": cost},
        )
    after_commit(session, lambda: metrics.batch_accepted(family, len(inputs)))
    return Accepted(batch, entry)
