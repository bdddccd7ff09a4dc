"""The credit balance never goes negative, whatever the concurrency (real PostgreSQL)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from tests.integration.conftest import PRO, balance, make_caller
from tests.integration.test_pipeline import _intake

from batchplane.core.errors import PaymentRequired
from batchplane.db.engine import Database
from batchplane.db.models import CreditEntry
from batchplane.intake.lookups import LookupRequest


async def test_concurrent_batches_charge_exactly_what_the_balance_allows(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=20)
    try:
        caller = await make_caller(database, credits=25)
        intake = _intake(database)

        async def submit(i: int) -> bool:
            try:
                await intake.submit(
                    caller, PRO, LookupRequest([f"a{i}.com", f"b{i}.com"], False, 0, None)
                )
            except PaymentRequired:
                return False
            return True

        accepted = sum(await asyncio.gather(*(submit(i) for i in range(40))))

        assert accepted == 12
        assert await balance(database, caller.org_id) == 1
        async with database.transaction() as session:
            total = await session.scalar(
                select(func.sum(CreditEntry.amount)).where(CreditEntry.org_id == caller.org_id)
            )
            lowest = await session.scalar(
                select(func.min(CreditEntry.balance_after)).where(
                    CreditEntry.org_id == caller.org_id
                )
            )
        assert total == 1
        assert lowest is not None and lowest >= 0
    finally:
        await database.dispose()
