"""A COMMIT whose answer is lost on the way back, on real PostgreSQL.

The connection to the database goes through a TCP proxy that forwards the COMMIT and
then resets the connection before PostgreSQL's answer gets back: the transaction did
commit, but the client cannot know it from that connection. Intake verifies such
commits (`verify_commits`), so that it never answers 503 for a batch it stored and
charged; other processes just see `Unavailable`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import event
from sqlalchemy.engine import make_url
from tests.support.proxies import TcpProxy, tcp_proxy

from batchplane.core.clock import SystemClock
from batchplane.core.errors import Unavailable
from batchplane.db import outbox, tenancy
from batchplane.db.engine import Database


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    async with tcp_proxy(make_url(postgres_url).port or 5432) as proxy:
        yield proxy


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


async def stored(postgres_url: str, org_id: str) -> bool:
    plain = make_url(postgres_url).set(drivername="postgresql")
    connection = await asyncpg.connect(plain.render_as_string(hide_password=False))
    try:
        row = await connection.fetchval("SELECT 1 FROM organizations WHERE id = $1", org_id)
        return row == 1
    finally:
        await connection.close()


async def create_org_losing_the_commit_answer(
    database: Database, proxy: TcpProxy, created: list[str]
) -> None:
    """Creates an organisation (its id appended to `created` before the COMMIT)."""
    async with database.transaction() as session:
        org = await tenancy.create_organization(
            session, name="lost-commit", plan="pro", now=SystemClock().now()
        )
        created.append(org.id)
        proxy.lose_answer_to = b"COMMIT"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_verified_commit_whose_answer_is_lost_succeeds(
    postgres_url: str, proxy: TcpProxy
) -> None:
    database = Database(through(proxy, postgres_url), verify_commits=True)
    created: list[str] = []
    try:
        await create_org_losing_the_commit_answer(database, proxy, created)
    finally:
        await database.dispose()
    assert proxy.lose_answer_to is None  # the COMMIT went through the proxy, answer lost
    assert await stored(postgres_url, created[0])


@pytest.mark.asyncio(loop_scope="session")
async def test_an_unverified_lost_commit_is_unavailable_though_it_was_stored(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """What verification is for: without it, the caller is told 503 about a write
    that was made."""
    database = Database(through(proxy, postgres_url))
    created: list[str] = []
    try:
        with pytest.raises(Unavailable):
            await create_org_losing_the_commit_answer(database, proxy, created)
    finally:
        await database.dispose()
    assert await stored(postgres_url, created[0])


@pytest.mark.asyncio(loop_scope="session")
async def test_a_lost_commit_the_database_cannot_confirm_in_time_is_unavailable(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """The database stays unreachable for longer than the verification window: the
    outcome is unknown, and the answer is the retryable 503 (a client retrying with
    its Idempotency-Key then gets the batch if it was stored)."""
    database = Database(through(proxy, postgres_url), verify_commits=True, commit_verify_s=1.0)
    created: list[str] = []
    proxy.dark_after_lost_answer = True
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await create_org_losing_the_commit_answer(database, proxy, created)
        waited = time.monotonic() - started
    finally:
        await proxy.restore()
        await database.dispose()
    assert waited >= 1.0  # it asked for the whole window before giving up
    assert await stored(postgres_url, created[0])


@pytest.mark.asyncio(loop_scope="session")
async def test_a_transaction_that_queued_records_is_verified_without_asking_its_id(
    postgres_url: str, proxy: TcpProxy
) -> None:
    """The outbox insert returns the transaction's id: no query of its own for it, and
    a lost COMMIT answer is still resolved with it."""
    database = Database(through(proxy, postgres_url), verify_commits=True)
    statements: list[str] = []
    event.listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )
    created: list[str] = []
    try:
        async with database.transaction() as session:
            org = await tenancy.create_organization(
                session, name="lost-commit", plan="pro", now=SystemClock().now()
            )
            created.append(org.id)
            await outbox.add(session, [outbox.Record("t", b"k", b"v")], now=SystemClock().now())
            proxy.lose_answer_to = b"COMMIT"
    finally:
        await database.dispose()
    assert proxy.lose_answer_to is None  # the COMMIT went through, its answer was lost
    assert await stored(postgres_url, created[0])
    assert not [s for s in statements if "txid_current_if_assigned" in s]
