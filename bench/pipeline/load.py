"""HTTP load through Envoy, and waiting for batches to end (read from the database)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import orjson

from .stats import Load, summarise

LOOKUP_PATH = "/api/v1/bulk/lookup"
INTELLIGENCE_PATH = "/api/v1/intelligence/batch"


def lookup_body(batch: int, size: int, hosts: Sequence[str], *, recompute: bool) -> bytes:
    """Batch number `batch` of `size` domains, cycling through `hosts`."""
    start = batch * size
    domains = [hosts[(start + i) % len(hosts)] for i in range(size)]
    return orjson.dumps({"domains": domains, "recompute": recompute})


def intelligence_body(batch: int, size: int, hosts: Sequence[str]) -> bytes:
    start = batch * size
    return orjson.dumps(
        {"requests": [{"domain": hosts[(start + i) % len(hosts)]} for i in range(size)]}
    )


def session(clients: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def closed_loop(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str] | Sequence[dict[str, str]],
    body: Callable[[int], bytes],
    *,
    clients: int,
    seconds: float,
    items: int,
    ok: frozenset[int],
) -> Load:
    """`clients` callers each sending the next request as soon as the last answered;
    with a sequence of `headers`, caller i sends `headers[i % len(headers)]`."""
    per_caller = [headers] if isinstance(headers, dict) else list(headers)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    counter = iter(range(10**9))
    deadline = time.perf_counter() + seconds

    async def caller(headers: dict[str, str]) -> None:
        while time.perf_counter() < deadline:
            payload = body(next(counter))
            started = time.perf_counter()
            try:
                async with http.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                continue
            if status in ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors[str(status)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(per_caller[i % len(per_caller)]) for i in range(clients)))
    return summarise(latencies, dict(errors), time.perf_counter() - started, items)


async def open_loop(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    items: int,
    ok: frozenset[int],
    max_in_flight: int,
) -> Load:
    """Requests sent on a fixed schedule, whatever the answers; latency counts from the
    scheduled time, so a stall is not hidden by requests that were never sent.

    At most `max_in_flight` requests wait for answers: a request due while that many
    are out is not sent and counts as an `overloaded` error, so an overloaded service
    ends the run on time instead of queueing minutes of requests.
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    total = int(rate * seconds)
    start = time.perf_counter()
    in_flight = 0

    async def one(index: int) -> None:
        nonlocal in_flight
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if in_flight >= max_in_flight:
            errors["overloaded"] += 1
            return
        in_flight += 1
        try:
            async with http.post(url, data=body(index), headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            errors[type(error).__name__] += 1
            return
        finally:
            in_flight -= 1
        if status in ok:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors[str(status)] += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    return summarise(latencies, dict(errors), time.perf_counter() - start, items)


@dataclass(frozen=True)
class Submitted:
    """Batches accepted for one end-to-end measurement."""

    first_id: int
    last_id: int
    batches: int
    items: int
    # Wall-clock time of the first POST, and when the last was accepted.
    started_at: float
    accepted_at: float
    errors: int


async def submit(
    http: aiohttp.ClientSession,
    base_url: str,
    token: str,
    bodies: Sequence[bytes],
    *,
    items_per_batch: int,
    clients: int,
) -> Submitted:
    """POST every body (`clients` at once); every one must be accepted (202)."""
    ids: list[int] = []
    errors: Counter[str] = Counter()
    queue = iter(bodies)
    headers = auth(token)

    async def caller() -> None:
        for payload in queue:
            async with http.post(f"{base_url}{LOOKUP_PATH}", data=payload, headers=headers) as r:
                answer = await r.read()
                if r.status != 202:
                    errors[f"{r.status} {answer[:200]!r}"] += 1
                    continue
                ids.append(int(orjson.loads(answer)["id"]))

    started = time.time()
    await asyncio.gather(*(caller() for _ in range(clients)))
    if errors:
        raise RuntimeError(f"batches refused: {dict(errors)}")
    return Submitted(
        min(ids), max(ids), len(ids), len(ids) * items_per_batch, started, time.time(), 0
    )


async def wait_finished(database_url: str, submitted: Submitted, *, timeout_s: float) -> float:
    """Until every submitted batch is finished; returns the wall-clock time of the last
    outcome (the batch's `finished_at`, written with its last item)."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        query = "SELECT count(*) FROM batches WHERE id BETWEEN $1 AND $2 AND status = 'finished'"
        while True:
            done = await connection.fetchval(query, submitted.first_id, submitted.last_id)
            if done >= submitted.batches:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{submitted.batches} batches finished in {timeout_s}s")
            await asyncio.sleep(0.05)
        last = await connection.fetchval(
            "SELECT extract(epoch FROM max(finished_at)) FROM batches WHERE id BETWEEN $1 AND $2",
            submitted.first_id,
            submitted.last_id,
        )
        return float(last)
    finally:
        await connection.close()


async def wait_first_outcome(database_url: str, submitted: Submitted, *, timeout_s: float) -> None:
    """Until one of the submitted items has an outcome."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        query = (
            "SELECT 1 FROM batch_items WHERE batch_id BETWEEN $1 AND $2 "
            "AND finished_at IS NOT NULL LIMIT 1"
        )
        while not await connection.fetchval(query, submitted.first_id, submitted.last_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no outcome within {timeout_s}s")
            await asyncio.sleep(0.02)
    finally:
        await connection.close()


async def first_outcome(database_url: str, submitted: Submitted) -> float:
    """Wall-clock time of the first item outcome among the submitted batches."""
    connection = await asyncpg.connect(database_url)
    try:
        first = await connection.fetchval(
            "SELECT extract(epoch FROM min(finished_at)) FROM batch_items "
            "WHERE batch_id BETWEEN $1 AND $2",
            submitted.first_id,
            submitted.last_id,
        )
        return float(first)
    finally:
        await connection.close()


# Outbox rows not yet published: packs, and rows of the older per-record table.
UNPUBLISHED = "SELECT (SELECT count(*) FROM outbox_packs) + (SELECT count(*) FROM outbox)"


async def outbox_empty(database_url: str, *, timeout_s: float) -> float:
    """Until the outbox holds nothing unpublished; returns when (wall clock)."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while await connection.fetchval(UNPUBLISHED):
            if time.monotonic() > deadline:
                raise TimeoutError("the outbox was not drained")
            await asyncio.sleep(0.1)
        return time.time()
    finally:
        await connection.close()
