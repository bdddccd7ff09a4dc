"""One behavioural suite, run on both databases: embedded SQLite and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from batchplane.core.clock import SystemClock
from batchplane.core.plans import DEFAULT_PLANS
from batchplane.db import billing, tenancy
from batchplane.db.engine import Database
from batchplane.db.migrate import upgrade_async
from batchplane.intake.auth import Caller

PRO = DEFAULT_PLANS["pro"]


@pytest_asyncio.fixture(loop_scope="session", params=["sqlite", "postgres"])
async def database(
    request: pytest.FixtureRequest, sqlite_url: str, postgres_url: str
) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        await upgrade_async(sqlite_url)
        url = sqlite_url
    else:
        url = postgres_url
    db = Database(url)
    yield db
    await db.dispose()


async def make_caller(database: Database, *, credits: int, plan: str = "pro") -> Caller:
    """A fresh organisation with `credits`, and its owner as the caller."""
    now = SystemClock().now()
    async with database.transaction() as session:
        org = await tenancy.create_organization(session, name="t", plan=plan, now=now)
        user = await tenancy.create_user(session, name="u", now=now)
        await tenancy.add_membership(session, user_id=user.id, org_id=org.id)
        if credits:
            await billing.credit(
                session, org_id=org.id, amount=credits, kind=billing.TOPUP, batch_id=None, now=now
            )
    return Caller(user_id=user.id, org_id=org.id, token_id="tok_test", scopes=frozenset())


async def balance(database: Database, org_id: str) -> int:
    async with database.transaction() as session:
        org: Any = await tenancy.get_organization(session, org_id=org_id)
        return int(org.credit_balance)
