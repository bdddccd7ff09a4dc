"""Engine and transactions for PostgreSQL (asyncpg) and embedded SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from batchplane.core import jsontext
from batchplane.core.errors import Unavailable

log = logging.getLogger(__name__)

# How often a commit whose answer was lost asks the database what became of it.
_VERIFY_POLL_S = 0.25


# `session.info` key under which a statement that returned `txid_current()` leaves
# it (the outbox's insert does), sparing commit verification a round trip of its own.
TRANSACTION_ID = "batchplane.transaction_id"


class Database:
    """One engine per process, and the one way to open a transaction.

    `verify_commits` is for processes that answer a client about a write (intake):
    when the connection drops during COMMIT, the write may or may not have been
    made. Rather than answer 503 for a batch that was in fact stored and charged,
    the transaction asks PostgreSQL (`txid_status`) over a new connection, for up to
    `commit_verify_s`, whether its transaction committed.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        verify_commits: bool = False,
        commit_verify_s: float = 15.0,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = _create_engine(url, pool_size=pool_size, echo=echo)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads that need no transaction run in autocommit on PostgreSQL: no BEGIN and
        # COMMIT round trips around them. SQLite's BEGIN IMMEDIATE hook (below) would
        # take the write lock even there, so SQLite reads use a transaction.
        self._reads = (
            None
            if self.is_sqlite
            else async_sessionmaker(
                self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
            )
        )
        # SQLite commits to a local file: there is no answer to lose.
        self._verify_commits = verify_commits and not self.is_sqlite
        self._commit_verify_s = commit_verify_s

    @asynccontextmanager
    async def transaction(self, *, verify_commit: bool = True) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on exit, rolled back on error.

        Losing the database mid-request becomes `Unavailable` (503, retryable),
        so that callers never see driver errors. `verify_commit=False` skips the
        commit verification of a `verify_commits` database for a transaction whose
        redoing is harmless (the outbox relay's: a record published twice is absorbed).
        """
        try:
            async with self._sessions() as session:
                await session.begin()
                try:
                    yield session
                except BaseException:
                    await _rollback_quietly(session)
                    raise
                xid = await self._transaction_id(session) if verify_commit else None
                try:
                    await session.commit()
                except Exception as exc:
                    if xid is None or not _is_connection_error(exc):
                        raise
                    await self._resolve_lost_commit(xid, exc)
        except Unavailable:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise Unavailable("database unavailable") from exc
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads that need no common snapshot: each statement stands
        alone (authentication: one query, one round trip instead of three).

        Never write through it: nothing would roll the writes back together.
        """
        if self._reads is None:
            async with self.transaction() as session:
                yield session
            return
        try:
            async with self._reads() as session:
                yield session
        except Exception as exc:
            if _is_connection_error(exc):
                raise Unavailable("database unavailable") from exc
            raise

    async def _transaction_id(self, session: AsyncSession) -> int | None:
        """The transaction's id if it wrote anything and commits are verified."""
        if not self._verify_commits:
            return None
        xid = session.info.get(TRANSACTION_ID)
        if xid is None:  # no statement of the transaction returned it on its way
            xid = (await session.execute(text("SELECT txid_current_if_assigned()"))).scalar()
        return None if xid is None else int(xid)

    async def _resolve_lost_commit(self, xid: int, lost: BaseException) -> None:
        """Return if transaction `xid` committed; raise Unavailable if it did not or
        if the database cannot say within the verification window."""
        deadline = time.monotonic() + self._commit_verify_s
        while True:
            try:
                async with self.engine.connect() as connection:
                    status = (
                        await connection.execute(text("SELECT txid_status(:xid)"), {"xid": xid})
                    ).scalar()
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                status = None
            if status == "committed":
                log.warning("commit answer lost; transaction %s had committed", xid)
                return
            if status == "aborted":
                raise Unavailable("database unavailable") from lost
            if time.monotonic() >= deadline:
                log.error("commit answer lost; transaction %s outcome unknown", xid)
                raise Unavailable("database unavailable") from lost
            await asyncio.sleep(_VERIFY_POLL_S)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _rollback_quietly(session: AsyncSession) -> None:
    """Roll back after the caller's error; a failed rollback (the connection is
    gone) must not hide the error that caused it."""
    try:
        await session.rollback()
    except Exception:
        log.debug("rollback failed after an error", exc_info=True)


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | OSError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or _connection_lost(exc)
    return False


def _connection_lost(error: BaseException) -> bool:
    """True when a driver error was caused by the connection going away (asyncpg
    reports "connection was closed in the middle of operation" without SQLAlchemy
    marking the connection invalidated)."""
    seen: BaseException | None = error
    for _ in range(10):  # a short cause chain; never loop on a cycle
        if seen is None:
            return False
        # asyncpg's connection errors, named so that this module needs no driver import.
        lost = {c.__name__ for c in type(seen).__mro__} & {"PostgresConnectionError"}
        if isinstance(seen, OSError | ConnectionError) or lost:
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
    return False


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Call `callback` once the session's transaction commits; never if it rolls back."""
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


# JSON columns through orjson (with `json` for what orjson refuses): `json.dumps` of
# each item's result was a twentieth of the processor's CPU per chunk. Reading stays
# with `json`, which keeps integers beyond 64 bits exact where orjson makes them floats.
_JSON = {"json_serializer": jsontext.dumps_text}


def _create_engine(url: str, *, pool_size: int, echo: bool) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **_JSON)
        _make_sqlite_transactions_immediate(engine)
        return engine
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, **_JSON
    )
    _ping_connections_that_sat_idle(engine)
    return engine


# A connection checked in less than this long ago is used without a ping.
_PING_AFTER_IDLE_S = 1.0


def _ping_connections_that_sat_idle(engine: AsyncEngine) -> None:
    """Pre-ping, but only connections that sat idle in the pool.

    SQLAlchemy's `pool_pre_ping` pings at every checkout, and asyncpg's ping is three
    round trips (BEGIN, a statement, ROLLBACK): on intake that was a fifth of each
    request's round trips. A connection checked in a moment ago has just worked; one
    that sat idle may have been closed by a database restart or a network cut, and
    is pinged first. A failed ping makes the pool open a new connection instead
    (`DisconnectionError`); a connection that breaks while in use is still reported
    as `Unavailable` and SQLAlchemy then drops every pooled connection of that age.
    """
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_s = time.monotonic() - record.info.get("checked_in_at", 0.0)
        if idle_s < _PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("pooled connection failed its ping") from exc


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
