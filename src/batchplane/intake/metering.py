"""Quota metering: one usage unit per item of every accepted batch (seed 001)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.errors import RateLimited
from batchplane.core.plans import Plan
from batchplane.db import billing


async def meter_or_refuse(
    session: AsyncSession, org_id: str, plan: Plan, units: int, now: datetime
) -> None:
    """Meter `units` in the caller's transaction, or refuse the whole batch with 429.

    The check and the increment are one statement, so concurrent batches can
    never pass the quota together; rolling the transaction back un-meters.
    """
    if not await billing.meter_within_quota(
        session, org_id=org_id, units=units, quota=plan.monthly_units, now=now
    ):
        raise RateLimited(
            f"monthly quota of {plan.monthly_units} usage units would be exceeded "
            f"by this batch of {units} items",
            code="quota_exceeded",
            extra={"quota": plan.monthly_units},
        )
