"""Fresh PostgreSQL databases for tests, on the server named by BATCHPLANE_TEST_POSTGRES_URL.

There is no skipping: a missing server fails the tests, in CI and locally.
"""

from __future__ import annotations

import os
import uuid

import asyncpg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("BATCHPLANE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)


def sqlalchemy_url(plain_url: str) -> str:
    return plain_url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def create_database() -> str:
    """Create an empty database; returns its asyncpg-style URL."""
    name = f"bp_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(admin_url())
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base = admin_url().rsplit("/", 1)[0]
    return f"{base}/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(admin_url())
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
