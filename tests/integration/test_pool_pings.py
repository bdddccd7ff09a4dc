"""Pooled PostgreSQL connections are pinged before use only after sitting idle.

Through a TCP proxy the test resets: a pooled connection that died while idle is
replaced at checkout without the caller seeing an error, while one used a moment ago
is not pinged (asyncpg's ping costs three round trips) and a break shows as the
retryable `Unavailable`, after which the pool starts afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.support.proxies import TcpProxy, tcp_proxy

from batchplane.core.errors import Unavailable
from batchplane.db.engine import Database


@pytest_asyncio.fixture(loop_scope="session")
async def pooled(postgres_url: str) -> AsyncIterator[tuple[Database, TcpProxy]]:
    async with tcp_proxy(make_url(postgres_url).port or 5432) as proxy:
        url = make_url(postgres_url).set(port=proxy.port)
        db = Database(url.render_as_string(hide_password=False), pool_size=1)
        yield db, proxy
        await db.dispose()


async def select_one(database: Database) -> int:
    async with database.transaction() as session:
        return int((await session.execute(text("SELECT 1"))).scalar_one())


@pytest.mark.asyncio(loop_scope="session")
async def test_a_connection_that_died_while_idle_is_replaced_unseen(
    pooled: tuple[Database, TcpProxy],
) -> None:
    db, proxy = pooled
    assert await select_one(db) == 1
    opened = proxy.connections
    await proxy.reset_connections()
    await asyncio.sleep(1.2)  # idle long enough to be pinged at the next checkout
    assert await select_one(db) == 1
    assert proxy.connections == opened + 1


@pytest.mark.asyncio(loop_scope="session")
async def test_a_connection_used_a_moment_ago_is_not_pinged(
    pooled: tuple[Database, TcpProxy],
) -> None:
    db, proxy = pooled
    assert await select_one(db) == 1
    await proxy.reset_connections()
    with pytest.raises(Unavailable):
        await select_one(db)
    # The failure invalidated the pool: the next call opens a new connection.
    assert await select_one(db) == 1
