"""The one place driver errors become `Unavailable` (503) when the database went away."""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncpg.exceptions import ConnectionDoesNotExistError
from sqlalchemy.exc import DBAPIError

from batchplane.core.errors import Unavailable
from batchplane.db.engine import Database


async def test_a_connection_closed_mid_operation_is_unavailable(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    lost = ConnectionDoesNotExistError("connection was closed in the middle of operation")
    try:
        with pytest.raises(Unavailable):
            async with database.transaction():
                raise DBAPIError("SELECT 1", {}, lost)
        with pytest.raises(DBAPIError):  # any other driver error stays what it is
            async with database.transaction():
                raise DBAPIError("SELECT 1", {}, ValueError("not a connection problem"))
    finally:
        await database.dispose()
