"""Shared fixtures: real PostgreSQL, a real Kafka-protocol broker, fixture sites, the stack."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from batchplane.db.migrate import upgrade_async
from tests.support import postgres
from tests.support.broker import running_broker
from tests.support.sites import SiteServer, default_sites, serve_sites
from tests.support.stack import OwnStack, RunningStack, running_stack, stack_env


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Any:
    """With BATCHPLANE_TEST_GC_EACH=1, collect garbage after every test, so that a leaked
    socket or transport is reported by the test that leaked it, not by whichever test
    happens to be running when the collector next runs (diagnosis; run pytest under
    `python -X tracemalloc=20` for where it was allocated)."""
    yield
    if os.environ.get("BATCHPLANE_TEST_GC_EACH") == "1":
        gc.collect()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def broker() -> AsyncIterator[str]:
    """Bootstrap servers of a Kafka-protocol broker (fails, never skips, when none)."""
    async with running_broker() as servers:
        yield servers


@contextlib.asynccontextmanager
async def _own_postgres_database() -> AsyncIterator[str]:
    plain = await postgres.create_database()
    url = postgres.sqlalchemy_url(plain)
    await upgrade_async(url)
    try:
        yield url
    finally:
        await postgres.drop_database(plain)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A migrated PostgreSQL database (SQLAlchemy URL) shared by the session's tests."""
    async with _own_postgres_database() as url:
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def own_postgres_url() -> AsyncIterator[str]:
    """A migrated PostgreSQL database for this test alone (no other outbox relay sees it)."""
    async with _own_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "batchplane.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sites() -> AsyncIterator[SiteServer]:
    async with serve_sites(default_sites()) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(
    broker: str, sites: SiteServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningStack]:
    """`batchplane run` on its own PostgreSQL database and the test broker, fetching the
    fixture sites."""
    async with (
        _own_postgres_database() as database_url,
        _stack(broker, database_url, sites, tmp_path_factory) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def own_stack(broker: str, sites: SiteServer, tmp_path_factory: pytest.TempPathFactory) -> OwnStack:
    """Starts `batchplane run` on its own database and topics, for tests that kill its
    services or need other settings: `async with own_stack({"BATCHPLANE_…": "…"}) as s:`."""

    @contextlib.asynccontextmanager
    async def start(extra: Mapping[str, str] | None = None) -> AsyncIterator[RunningStack]:
        async with (
            _own_postgres_database() as database_url,
            _stack(broker, database_url, sites, tmp_path_factory, extra) as running,
        ):
            yield running

    return start


@contextlib.asynccontextmanager
async def _stack(
    broker: str,
    database_url: str,
    sites: SiteServer,
    tmp_path_factory: pytest.TempPathFactory,
    extra: Mapping[str, str] | None = None,
) -> AsyncIterator[RunningStack]:
    env, ports = stack_env(
        database_url=database_url,
        bootstrap_servers=broker,
        state_dir=Path(tmp_path_factory.mktemp("stack")),
        site_port=sites.port,
        site_hosts=sorted(sites.sites),
        extra=extra,
    )
    async with running_stack(env, ports) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def org(stack: RunningStack) -> dict[str, Any]:
    """A fresh pro organisation with 1,000 credits and an all-scopes token."""
    return stack.cli("admin", "create-org", "--name", "acme", "--plan", "pro", "--credits", "1000")
