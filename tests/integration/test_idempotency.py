"""Idempotency keys on SQLite and PostgreSQL: claims, replays, expiry with an injected
clock, abandoned in-flight claims, and 5xx responses that leave the key free."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.integration.conftest import PRO, make_caller

from batchplane.api.framework.v1 import framework_pb2
from batchplane.core.errors import BatchplaneError, Conflict, InvalidRequest, Unavailable
from batchplane.db import idempotency
from batchplane.db.engine import Database
from batchplane.db.idempotency import ClaimOutcome
from batchplane.intake.guard import Admitted
from batchplane.intake.idempotency import IdempotencyGate, Reply

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
LEASE = timedelta(minutes=2)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class CallContext:
    """The two things the gate needs from a gRPC call: its metadata, and a place
    for initial metadata."""

    def __init__(self, key: str) -> None:
        self.metadata = (("idempotency-key", key),)
        self.sent: list[tuple[str, str]] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def send_initial_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.sent = list(metadata)


async def _claim(database: Database, org: str, key: str, digest: str, now: datetime) -> Any:
    async with database.transaction() as session:
        return await idempotency.claim(
            session, org_id=org, key=key, request_hash=digest, now=now, ttl=TTL, lease=LEASE
        )


async def test_claims_replays_mismatches_and_expiry(database: Database) -> None:
    org = f"org_{id(database)}_{T0.timestamp()}"
    assert (await _claim(database, org, "k", "h1", T0)).outcome is ClaimOutcome.NEW
    assert (await _claim(database, org, "k", "h1", T0)).outcome is ClaimOutcome.IN_FLIGHT
    assert (await _claim(database, org, "k", "h2", T0)).outcome is ClaimOutcome.MISMATCH
    async with database.transaction() as session:
        await idempotency.complete(session, org_id=org, key="k", response={"status": 202})

    replay = await _claim(database, org, "k", "h1", T0 + TTL - timedelta(seconds=1))
    assert replay.outcome is ClaimOutcome.REPLAY
    assert replay.response == {"status": 202}
    # 24 hours later the key is free again, whatever the body.
    assert (await _claim(database, org, "k", "h2", T0 + TTL)).outcome is ClaimOutcome.NEW


async def test_an_abandoned_in_flight_claim_is_taken_over_after_its_lease(
    database: Database,
) -> None:
    org = f"org_lease_{id(database)}"
    assert (await _claim(database, org, "k", "h", T0)).outcome is ClaimOutcome.NEW
    assert (await _claim(database, org, "k", "h", T0 + LEASE / 2)).outcome is ClaimOutcome.IN_FLIGHT
    assert (await _claim(database, org, "k", "h", T0 + LEASE)).outcome is ClaimOutcome.NEW


async def test_expired_keys_are_purged(database: Database) -> None:
    org = f"org_purge_{id(database)}"
    await _claim(database, org, "old", "h", T0 - 2 * TTL)
    await _claim(database, org, "fresh", "h", T0)
    async with database.transaction() as session:
        assert await idempotency.purge_expired(session, now=T0) >= 1
    assert (await _claim(database, org, "fresh", "h", T0)).outcome is ClaimOutcome.IN_FLIGHT
    assert (await _claim(database, org, "old", "other", T0)).outcome is ClaimOutcome.NEW


async def test_a_5xx_does_not_pin_the_key_but_a_4xx_does(database: Database) -> None:
    caller = await make_caller(database, credits=0)
    admitted = Admitted(caller, PRO)
    clock = FakeClock(T0)
    gate = IdempotencyGate(database, clock=clock, ttl=TTL, lease=LEASE)
    runs = 0

    async def failing() -> Reply[framework_pb2.Usage]:
        nonlocal runs
        runs += 1
        raise Unavailable("database unavailable")

    async def succeeding() -> Reply[framework_pb2.Usage]:
        nonlocal runs
        runs += 1
        return Reply(framework_pb2.Usage(units=runs), status=200)

    async def run(key: str, produce: Any, fingerprint: str = "f") -> framework_pb2.Usage:
        context: Any = CallContext(key)
        return await gate.run(
            context,
            admitted,
            fingerprint=fingerprint,
            response_type=framework_pb2.Usage,
            produce=produce,
        )

    with pytest.raises(Unavailable):
        await run("five-hundred", failing)
    assert (await run("five-hundred", succeeding)).units == 2  # retried, ran again
    assert (await run("five-hundred", succeeding)).units == 2  # replayed, not run
    assert runs == 2

    async def rejected() -> Reply[framework_pb2.Usage]:
        raise InvalidRequest("nope", code="invalid_request")

    with pytest.raises(InvalidRequest):
        await run("four-hundred", rejected)
    with pytest.raises(BatchplaneError) as replayed:
        await run("four-hundred", succeeding)
    assert (replayed.value.http_status, replayed.value.code) == (422, "invalid_request")
    assert replayed.value.headers["idempotency-replayed"] == "true"
    with pytest.raises(InvalidRequest) as reused:
        await run("four-hundred", succeeding, fingerprint="other")
    assert reused.value.code == "idempotency_key_reuse"


async def test_a_request_in_flight_answers_409(database: Database) -> None:
    caller = await make_caller(database, credits=0)
    gate = IdempotencyGate(database, clock=FakeClock(T0), ttl=TTL, lease=LEASE)
    context: Any = CallContext("busy")

    async def reenter() -> Reply[framework_pb2.Usage]:
        with pytest.raises(Conflict) as conflict:
            await gate.run(
                CallContext("busy"),  # type: ignore[arg-type]
                Admitted(caller, PRO),
                fingerprint="f",
                response_type=framework_pb2.Usage,
                produce=reenter,
            )
        assert conflict.value.code == "idempotency_conflict"
        return Reply(framework_pb2.Usage())

    await gate.run(
        context,
        Admitted(caller, PRO),
        fingerprint="f",
        response_type=framework_pb2.Usage,
        produce=reenter,
    )
    assert ("idempotency-replayed", "false") in context.sent
