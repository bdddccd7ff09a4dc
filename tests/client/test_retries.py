"""Retries, deadlines and idempotency keys against the real intake, through a real gRPC
proxy that refuses calls or loses answers on request."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import grpc
import pytest
from tests.client.conftest import Balance, ClientFor, NewOrg
from tests.support.broker import free_port
from tests.support.proxies import Attempt, GrpcProxy
from tests.support.stack import RunningStack

from batchplane.api.scrape.v1 import scrape_pb2
from batchplane.client import (
    IDEMPOTENCY_KEY_HEADER,
    BatchplaneClient,
    DeadlineExceeded,
    PaymentRequired,
    RetryPolicy,
    ScrapeBatchBody,
    ServiceUnavailable,
    UnprocessableEntity,
)
from batchplane.core.clock import SystemClock
from batchplane.db import idempotency
from batchplane.db.engine import Database
from batchplane.intake.idempotency import request_fingerprint

OK, UNAVAILABLE = grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE
CREATE_LOOKUP = "/CreateBulkLookup"


def _keys(attempts: list[Attempt]) -> list[str]:
    return [a.metadata[IDEMPOTENCY_KEY_HEADER] for a in attempts]


async def test_the_same_key_returns_the_first_batch_and_charges_once(
    client_for: ClientFor, new_org: NewOrg, balance: Balance
) -> None:
    org = new_org(credits=10)
    key = f"client-{uuid.uuid4()}"
    async with client_for(org) as client:
        first = await client.lookups.create(["plain.test", "wp.test"], idempotency_key=key)
        again = await client.lookups.create(["plain.test", "wp.test"], idempotency_key=key)
        with pytest.raises(UnprocessableEntity) as reused:
            await client.lookups.create(["plain.test"], idempotency_key=key)

    assert again == first
    assert reused.value.code == "idempotency_key_reuse"
    assert balance(org) == 10 - 2


async def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    intake_target: str, client_for: ClientFor, new_org: NewOrg, balance: Balance
) -> None:
    org = new_org(credits=10)
    async with (
        GrpcProxy(intake_target, lose_answers=1).serving() as proxy,
        client_for(org, target=f"127.0.0.1:{proxy.port}") as client,
    ):
        created = await client.lookups.create(["plain.test", "wp.test"])
        batch = await client.get_batch(created.id)
        second = await client.lookups.create(["plain.test"])

    attempts = proxy.at(CREATE_LOOKUP)
    # The first attempt was executed; its answer never arrived. The retry replayed it.
    assert [a.upstream for a in attempts] == [OK, OK, OK]
    first_key, retry_key, other_key = _keys(attempts)
    assert first_key == retry_key != other_key
    assert (batch.id, batch.progress.requested) == (created.id, 2)
    assert second.id != created.id
    assert balance(org) == 10 - 2 - 1  # charged once per logical call


async def test_unavailable_is_retried_until_the_service_answers(
    intake_target: str, client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    async with (
        GrpcProxy(intake_target, refuse=3).serving() as proxy,
        client_for(org, target=f"127.0.0.1:{proxy.port}") as client,
    ):
        created = await client.lookups.create(["plain.test"])

    attempts = proxy.at(CREATE_LOOKUP)
    assert [a.upstream for a in attempts] == [None, None, None, OK]
    assert len(set(_keys(attempts))) == 1
    assert created.requested_count == 1


async def test_retries_stop_after_the_policys_attempts(
    intake_target: str, client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
    async with (
        GrpcProxy(intake_target, refuse=100).serving() as proxy,
        client_for(org, target=f"127.0.0.1:{proxy.port}", retry=policy) as client,
    ):
        with pytest.raises(ServiceUnavailable) as unavailable:
            await client.lookups.create(["plain.test"])

    assert len(proxy.attempts) == 3
    assert unavailable.value.retryable
    assert unavailable.value.grpc_code == UNAVAILABLE


async def test_other_errors_are_never_retried(
    intake_target: str, client_for: ClientFor, new_org: NewOrg
) -> None:
    broke = new_org(credits=0)
    async with (
        GrpcProxy(intake_target).serving() as proxy,
        client_for(broke, target=f"127.0.0.1:{proxy.port}") as client,
    ):
        with pytest.raises(PaymentRequired):
            await client.lookups.create(["plain.test"])
        with pytest.raises(UnprocessableEntity):
            await client.scrapes.create({"urls": ["ftp://nope"], "schema": {}})

    assert [a.upstream for a in proxy.attempts] == [
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]


async def test_nothing_listening_is_unavailable_once_retries_run_out(new_org: NewOrg) -> None:
    org = new_org()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
    async with BatchplaneClient(
        f"127.0.0.1:{free_port()}", token=org["token"], retry=policy, timeout_s=30
    ) as client:
        with pytest.raises(ServiceUnavailable) as unavailable:
            await client.get_batch(1)

    assert unavailable.value.retryable


async def test_a_deadline_bounds_the_call(client_for: ClientFor, new_org: NewOrg) -> None:
    org = new_org()
    async with client_for(org, timeout_s=1e-6) as client:
        with pytest.raises(DeadlineExceeded):
            await client.framework.usage()
        usage = await client.framework.usage(timeout_s=30)

    assert usage.org_id == org["org_id"]


async def test_a_key_still_in_flight_is_retried_until_the_first_request_ends(
    stack: RunningStack, intake_target: str, client_for: ClientFor, new_org: NewOrg
) -> None:
    """Intake answers a key whose first request still runs with 409 idempotency_conflict
    and `retry-after: 1`; the client waits and retries with the same key. The "first
    request" here is a claim the test holds, released before the third attempt."""
    org = new_org()
    key = f"in-flight-{uuid.uuid4()}"
    body: ScrapeBatchBody = {"urls": ["http://shop.test/"], "schema": {"type": "object"}}
    fingerprint = request_fingerprint(
        "scrape-batch", scrape_pb2.CreateScrapeBatchRequest(), json.dumps(body).encode()
    )
    database = Database(stack.env["DATABASE_URL"])
    async with database.transaction() as session:
        claimed = await idempotency.claim(
            session,
            org_id=org["org_id"],
            key=key,
            request_hash=fingerprint,
            now=SystemClock().now(),
            ttl=timedelta(hours=1),
            lease=timedelta(minutes=10),
        )
    assert claimed.outcome is idempotency.ClaimOutcome.NEW

    async def release_before_the_third(attempt: Attempt) -> None:
        if len(proxy.attempts) == 3:
            async with database.transaction() as session:
                await idempotency.release(session, org_id=org["org_id"], key=key)

    proxy = GrpcProxy(intake_target, before_forward=release_before_the_third)
    try:
        async with (
            proxy.serving(),
            client_for(org, target=f"127.0.0.1:{proxy.port}") as client,
        ):
            created = await client.scrapes.create(body, idempotency_key=key)
    finally:
        await database.dispose()

    assert [a.upstream for a in proxy.attempts] == [
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.ABORTED,
        OK,
    ]
    assert set(_keys(proxy.attempts)) == {key}
    assert created.total_urls == 1
