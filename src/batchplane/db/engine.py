"""Engine and transactions for PostgreSQL (asyncpg) and embedded SQLite (aiosqlite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from batchplane.core.errors import Unavailable


class Database:
    """One engine per process, and the one way to open a transaction."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = _create_engine(url, pool_size=pool_size, echo=echo)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on exit, rolled back on error.

        Losing the database mid-request becomes `Unavailable` (503, retryable),
        so that callers never see driver errors.
        """
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
            raise Unavailable("database unavailable") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("database unavailable") from exc
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()


def _create_engine(url: str, *, pool_size: int, echo: bool) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _make_sqlite_transactions_immediate(engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def _make_sqlite_transactions_immediate(engine: AsyncEngine) -> None:
    """WAL and BEGIN IMMEDIATE: several processes write the embedded database.

    A deferred SQLite transaction that reads and then writes fails at once with
    SQLITE_BUSY when another process wrote in between; taking the write lock at
    BEGIN makes writers queue up (for up to the busy timeout) instead.
    """
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
