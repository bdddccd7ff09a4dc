"""Tools for fault-injection tests: a broker that can be restarted empty, and a look at
what the database holds about one organisation (the TCP proxy that can be cut is in
`tests.support.proxies`).

Everything is real: the broker is the Tansu binary the stack uses, and the database is
read with plain SQL (the test checks the stored state, not what an API chooses to show).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.local_broker import tansu_binary, wait_until_ready
from tests.support.broker import free_port, stop_process


@dataclass
class RestartableBroker:
    """A memory-only Tansu broker on a fixed port, that a test can kill and start again.

    Clients reach it through `advertised_port`, which may be a proxy's port: the broker
    tells clients to connect there after bootstrap.
    """

    port: int = field(default_factory=free_port)
    advertised_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    async def start(self) -> None:
        listen = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listen,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_until_ready("127.0.0.1", self.port)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: everything it held (topics, records, offsets) is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process, timeout_s=5)
            self.process = None


@contextlib.asynccontextmanager
async def restartable_broker(
    advertised_port: int | None = None,
) -> AsyncIterator[RestartableBroker]:
    broker = RestartableBroker(advertised_port=advertised_port)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def plain_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass(frozen=True)
class Books:
    """What the database holds for one organisation: its money and its batches."""

    balance: int
    charged: int  # sum of charge entries (positive)
    refunded: int  # sum of refund entries
    topped_up: int
    ledger_entries: int
    batches: list[dict[str, Any]]
    # item status -> count, over all the organisation's batches
    items: dict[str, int]

    @property
    def ledger_consistent(self) -> bool:
        return self.balance == self.topped_up - self.charged + self.refunded


async def books(database_url: str, org_id: str) -> Books:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        balance = await connection.fetchval(
            "SELECT credit_balance FROM organizations WHERE id = $1", org_id
        )
        sums = {
            row["kind"]: (int(row["total"]), int(row["n"]))
            for row in await connection.fetch(
                "SELECT kind, sum(amount) AS total, count(*) AS n FROM credit_ledger"
                " WHERE org_id = $1 GROUP BY kind",
                org_id,
            )
        }
        batch_rows = await connection.fetch(
            "SELECT id, status, requested_count, processed_count, success_count, error_count,"
            " cancelled_count, credits_charged, credits_refunded FROM batches"
            " WHERE org_id = $1 ORDER BY id",
            org_id,
        )
        items = await connection.fetch(
            "SELECT i.status, count(*) AS n FROM batch_items i JOIN batches b"
            " ON b.id = i.batch_id WHERE b.org_id = $1 GROUP BY i.status",
            org_id,
        )
    finally:
        await connection.close()
    return Books(
        balance=int(balance),
        charged=-sums.get("charge", (0, 0))[0],
        refunded=sums.get("refund", (0, 0))[0],
        topped_up=sums.get("topup", (0, 0))[0],
        ledger_entries=sum(n for _, n in sums.values()),
        batches=[dict(r) for r in batch_rows],
        items={r["status"]: int(r["n"]) for r in items},
    )


async def fetch(database_url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        return [dict(r) for r in await connection.fetch(query, *args)]
    finally:
        await connection.close()


async def read_events(
    bootstrap_servers: str, topic: str, *, batch_id: int, idle_s: float = 2.0
) -> list[events_pb2.Event]:
    """Every event of `batch_id` on the topic, from its start, until it stays quiet."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    events: list[events_pb2.Event] = []
    try:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while loop.time() - quiet_since < idle_s:
            chunk = await consumer.getmany(timeout_ms=200)
            for records in chunk.values():
                quiet_since = loop.time()
                for record in records:
                    event = events_pb2.Event.FromString(record.value)
                    if event.batch_id == batch_id:
                        events.append(event)
    finally:
        await consumer.stop()
    return events


def item_outcomes(events: list[events_pb2.Event]) -> dict[int, set[str]]:
    """item index -> the distinct event ids of its `item_completed` events."""
    outcomes: dict[int, set[str]] = {}
    for event in events:
        if event.WhichOneof("kind") == "item_completed":
            outcomes.setdefault(event.item_completed.item_index, set()).add(event.event_id)
    return outcomes


@contextlib.asynccontextmanager
async def private_stack(
    *,
    bootstrap_servers: str,
    sites: Any,
    state_dir: Any,
    database_port: int | None = None,
    extra: dict[str, str] | None = None,
) -> AsyncIterator[Any]:
    """`batchplane run` on a fresh migrated database and a broker of the test's choosing.

    With `database_port`, the services reach PostgreSQL on that port of 127.0.0.1 (a
    proxy's) instead of the server's own; `env["BATCHPLANE_TEST_DIRECT_DATABASE_URL"]`
    is the direct URL, for the test's own reads."""
    from batchplane.db.migrate import upgrade_async
    from tests.support import postgres
    from tests.support.stack import running_stack, stack_env

    plain = await postgres.create_database()
    direct = postgres.sqlalchemy_url(plain)
    await upgrade_async(direct)
    served = direct
    if database_port is not None:
        host, _, rest = direct.partition("@")
        served = f"{host}@127.0.0.1:{database_port}/{rest.split('/', 1)[1]}"
    try:
        env, ports = stack_env(
            database_url=served,
            bootstrap_servers=bootstrap_servers,
            state_dir=state_dir,
            site_port=sites.port,
            site_hosts=sorted(sites.sites),
            extra=extra,
        )
        env["BATCHPLANE_TEST_DIRECT_DATABASE_URL"] = direct
        async with running_stack(env, ports) as running:
            yield running
    finally:
        await postgres.drop_database(plain)
