"""Races across two intake replicas: 120 concurrent calls split between the stack's intake
and a second intake process on the same PostgreSQL, Redis and broker. Idempotency,
credits, the monthly quota and the bulk rate limit must hold exactly, as on one replica."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.support.broker import free_port, stop_process
from tests.support.stack import BIN, RunningStack

from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc

CALLS = 120


@pytest_asyncio.fixture(loop_scope="session")
async def replicas(
    stack: RunningStack,
) -> AsyncIterator[list[lookup_pb2_grpc.BulkLookupServiceStub]]:
    """Stubs of the stack's intake and of a second intake process."""
    port = free_port()
    env = {**stack.env, "BATCHPLANE_INTAKE_PORT": str(port), "BATCHPLANE_INTAKE_METRICS_PORT": "0"}
    log = (stack.state_dir / "logs" / "intake-2.log").open("wb")
    second = subprocess.Popen(
        [str(BIN / "batchplane"), "serve", "intake"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['intake']}") as first_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as second_channel,
        ):
            await health_pb2_grpc.HealthStub(second_channel).Check(
                health_pb2.HealthCheckRequest(), timeout=60, wait_for_ready=True
            )
            yield [
                lookup_pb2_grpc.BulkLookupServiceStub(first_channel),
                lookup_pb2_grpc.BulkLookupServiceStub(second_channel),
            ]
    finally:
        await stop_process(second, timeout_s=20)
        log.close()


def _org(stack: RunningStack, plan: str, credits: int) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "race", "--plan", plan, "--credits", str(credits)
    )


async def _storm(
    replicas: list[lookup_pb2_grpc.BulkLookupServiceStub],
    token: str,
    *,
    key: str | None = None,
) -> list[int | grpc.StatusCode]:
    """CALLS concurrent one-domain bulk lookups, alternating replicas: batch ids or codes."""
    metadata = [("authorization", f"Bearer {token}")]
    if key is not None:
        metadata.append(("idempotency-key", key))

    async def call(index: int) -> int | grpc.StatusCode:
        stub = replicas[index % 2]
        try:
            batch = await stub.CreateBulkLookup(
                lookup_pb2.CreateBulkLookupRequest(domains=["plain.test"]),
                metadata=metadata,
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return int(batch.id)

    return list(await asyncio.gather(*(call(i) for i in range(CALLS))))


def _balance(stack: RunningStack, org: dict[str, Any]) -> int:
    return int(stack.cli("admin", "show-org", org["org_id"])["credit_balance"])


async def test_one_idempotency_key_runs_once_across_replicas(
    stack: RunningStack, replicas: list[lookup_pb2_grpc.BulkLookupServiceStub]
) -> None:
    org = _org(stack, "enterprise", 100)

    answers = await _storm(replicas, org["token"], key=f"race-{uuid.uuid4()}")

    batch_ids = {a for a in answers if isinstance(a, int)}
    refused = Counter(a for a in answers if not isinstance(a, int))
    assert len(batch_ids) == 1  # the first one, replayed to the late callers
    assert set(refused) <= {grpc.StatusCode.ABORTED}  # 409 while it was in flight
    assert _balance(stack, org) == 99
    assert stack.cli("admin", "show-org", org["org_id"])["usage"]["units"] == 1


async def test_credits_are_never_overspent_across_replicas(
    stack: RunningStack, replicas: list[lookup_pb2_grpc.BulkLookupServiceStub]
) -> None:
    org = _org(stack, "enterprise", 7)

    answers = await _storm(replicas, org["token"])

    accepted = [a for a in answers if isinstance(a, int)]
    assert len(set(accepted)) == len(accepted) == 7
    assert Counter(a for a in answers if not isinstance(a, int)) == {
        grpc.StatusCode.FAILED_PRECONDITION: CALLS - 7  # 402 insufficient credits
    }
    assert _balance(stack, org) == 0


async def test_the_monthly_quota_holds_across_replicas(
    stack: RunningStack, replicas: list[lookup_pb2_grpc.BulkLookupServiceStub]
) -> None:
    org = _org(stack, "tiny", 100)  # 5 units a month

    answers = await _storm(replicas, org["token"])

    assert sum(isinstance(a, int) for a in answers) == 5
    assert Counter(a for a in answers if not isinstance(a, int)) == {
        grpc.StatusCode.RESOURCE_EXHAUSTED: CALLS - 5  # 429 quota_exceeded
    }
    assert _balance(stack, org) == 95


async def test_the_bulk_rate_limit_is_shared_by_replicas(
    stack: RunningStack, replicas: list[lookup_pb2_grpc.BulkLookupServiceStub]
) -> None:
    org = _org(stack, "free", 1000)  # 5 bulk submissions a minute, kept in Redis

    answers = await _storm(replicas, org["token"])

    assert sum(isinstance(a, int) for a in answers) == 5
    assert Counter(a for a in answers if not isinstance(a, int)) == {
        grpc.StatusCode.RESOURCE_EXHAUSTED: CALLS - 5
    }
