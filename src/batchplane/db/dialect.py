"""The few statements whose SQL differs between PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def _insert(session: AsyncSession, table: Table) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


async def insert_ignoring_conflicts(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """INSERT … ON CONFLICT DO NOTHING for many rows in one round trip."""
    if rows:
        await session.execute(_insert(session, table).on_conflict_do_nothing(), list(rows))


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE SET the `update` columns from the new row."""
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={col: stmt.excluded[col] for col in update}
    )
    await session.execute(stmt, list(rows))


def is_postgresql(session: AsyncSession) -> bool:
    """True on PostgreSQL: array parameters, data-modifying CTEs, SKIP LOCKED."""
    return bool(session.get_bind().dialect.name == "postgresql")


def supports_skip_locked(session: AsyncSession) -> bool:
    return is_postgresql(session)


async def increment(
    session: AsyncSession, table: Table, *, key: dict[str, Any], column: str, amount: int
) -> None:
    """Add `amount` to `column` of the row with primary key `key`, creating it if needed."""
    stmt = _insert(session, table).values(**key, **{column: amount})
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={column: table.c[column] + stmt.excluded[column]}
    )
    await session.execute(stmt)


async def insert_if_absent(session: AsyncSession, table: Table, row: dict[str, Any]) -> bool:
    """INSERT one row unless its key exists; True when this call inserted it."""
    stmt = _insert(session, table).values(**row).on_conflict_do_nothing()
    result = await session.execute(stmt.returning(*table.primary_key.columns))
    return result.first() is not None


async def increment_within(
    session: AsyncSession,
    table: Table,
    *,
    key: dict[str, Any],
    column: str,
    amount: int,
    ceiling: int,
) -> int | None:
    """Add `amount` to `column` unless the result would pass `ceiling`.

    Returns the new value, or None when refused. One statement, so concurrent
    callers can never pass the ceiling together.
    """
    if amount > ceiling:
        return None
    stmt = _insert(session, table).values(**key, **{column: amount})
    total = table.c[column] + stmt.excluded[column]
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={column: total}, where=total <= ceiling
    ).returning(table.c[column])
    value = (await session.execute(stmt)).scalar_one_or_none()
    return None if value is None else int(value)
