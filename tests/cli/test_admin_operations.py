"""Operator commands: plans, token revocation, batches, dead-lettered webhooks and work.

The embedded database covers the commands' own rules and errors; the session stack
shows their effect on a running platform (a revoked token is refused at once, a new
plan's quota applies to the next call, replayed webhooks arrive with their ids, a
retry of failed items is charged and runs, replayed dead letters are processed once)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import RunningStack

from batchplane.bus.kafka import make_producer
from batchplane.bus.records import work_records
from batchplane.core.clock import SystemClock
from batchplane.core.settings import KafkaSettings
from batchplane.db import batches
from batchplane.db.engine import Database

BIN = Path(sys.executable).parent / "batchplane"
LOOKUP = "/api/v1/bulk/lookup"


def _run(state_dir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["BATCHPLANE_STATE_DIR"] = str(state_dir)
    env.update(extra_env)
    return subprocess.run(
        [str(BIN), "admin", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _admin(state_dir: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    done = _run(state_dir, *args)
    assert done.returncode == expect, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def test_plans_tokens_and_their_errors_on_the_embedded_database(tmp_path: Path) -> None:
    org = _admin(tmp_path, "create-org", "--name", "acme", "--plan", "free")
    org_id = org["org_id"]
    unbound = _admin(tmp_path, "create-token", "--org", org_id, "--unbound")

    shown = _admin(tmp_path, "show-org", org_id)
    tokens = {t["token_id"]: t for t in shown["tokens"]}
    assert set(tokens) == {org["token_id"], unbound["token_id"]}
    assert tokens[org["token_id"]]["bound"] is True
    assert tokens[unbound["token_id"]]["bound"] is False
    assert all(t["revoked_at"] is None for t in tokens.values())
    # Secrets are never shown again.
    assert org["token"] not in json.dumps(shown)

    moved = _admin(tmp_path, "set-plan", org_id, "starter")
    assert moved == {"org_id": org_id, "plan": "starter", "previous_plan": "free"}
    assert _admin(tmp_path, "show-org", org_id)["plan"] == "starter"
    assert "unknown plan" in _admin(tmp_path, "set-plan", org_id, "gold", expect=2)["error"]
    assert "not found" in _admin(tmp_path, "set-plan", "org_missing", "pro", expect=2)["error"]

    assert _admin(tmp_path, "revoke-token", org["token_id"]) == {
        "token_id": org["token_id"],
        "revoked": True,
    }
    again = _admin(tmp_path, "revoke-token", org["token_id"], expect=2)
    assert "already revoked" in again["error"]
    tokens = {t["token_id"]: t for t in _admin(tmp_path, "show-org", org_id)["tokens"]}
    assert tokens[org["token_id"]]["revoked_at"] is not None
    assert tokens[unbound["token_id"]]["revoked_at"] is None


def test_batch_and_webhook_commands_on_an_empty_database(tmp_path: Path) -> None:
    assert _admin(tmp_path, "list-batches") == {"batches": []}
    assert "not found" in _admin(tmp_path, "inspect-batch", "42", expect=2)["error"]
    assert _admin(tmp_path, "replay-webhooks", "--all") == {"replayed": [], "count": 0}
    assert "--limit" in _admin(tmp_path, "list-batches", "--limit", "0", expect=2)["error"]
    # Replaying everything must be asked for: no filter is a usage error.
    done = _run(tmp_path, "replay-webhooks")
    assert done.returncode == 2
    assert "one of the arguments --org --batch --all is required" in done.stderr


def test_retry_and_replay_refusals_without_a_stack(tmp_path: Path) -> None:
    assert "batch 42 not found" in _admin(tmp_path, "retry-failed", "42", expect=2)["error"]
    assert "--limit" in _admin(tmp_path, "replay-dead-letters", "--limit", "0", expect=2)["error"]
    # No broker: an error, and nothing committed, so nothing is lost.
    closed = f"127.0.0.1:{_closed_port()}"
    done = _run(tmp_path, "replay-dead-letters", KAFKA_BOOTSTRAP_SERVERS=closed)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broker error" in json.loads(done.stdout)["error"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- against the running stack ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


async def _until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await condition()


async def test_operators_inspect_a_batch_and_replay_its_dead_webhooks(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = stack.cli("admin", "create-org", "--name", "ops", "--plan", "pro", "--credits", "100")
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    hook = f"down-{uuid.uuid4().hex[:8]}"
    receiver.statuses[hook] = 500  # every attempt fails: dead after the retry schedule
    status, _, batch = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test"], "webhook_url": receiver.url(hook)},
        bearer(org["token"]),
    )
    assert status == 202, batch
    await poll_lookup(http, stack.base_url, batch["id"], org["token"])

    async def statuses(expected: str) -> bool:
        # Polled through the API: a CLI run per poll would take a second each.
        url = f"{stack.base_url}/api/v1/webhooks/deliveries?batch_id={batch['id']}"
        answer, body = await get_json(http, url, bearer(org["token"]))
        assert answer == 200, body
        return [d["status"] for d in body["deliveries"]] == [expected, expected]

    await _until(lambda: statuses("dead"))
    sent = {r.webhook_id for r in receiver.at(hook)}
    assert len(sent) == 2

    listed = stack.cli("admin", "list-batches", "--org", org["org_id"])["batches"]
    assert [b["batch_id"] for b in listed] == [batch["id"]]
    assert (listed[0]["family"], listed[0]["status"]) == ("lookup", "finished")
    assert listed[0]["progress"]["succeeded"] == 1
    inspected = stack.cli("admin", "inspect-batch", str(batch["id"]))
    assert inspected["items"] == [
        {"item_index": 0, "input": "plain.test", "status": "succeeded", "error": None}
    ]
    assert inspected["params"]["webhook_url"] == receiver.url(hook)
    assert inspected["webhooks"] == {"dead": 2}

    # The receiver is back: replay the batch's dead deliveries, under their own ids.
    del receiver.statuses[hook]
    before = len(receiver.at(hook))
    replayed = stack.cli("admin", "replay-webhooks", "--batch", str(batch["id"]))
    assert replayed["count"] == 2
    await _until(lambda: statuses("delivered"))
    assert stack.cli("admin", "inspect-batch", str(batch["id"]))["webhooks"] == {"delivered": 2}
    again = receiver.at(hook)[before:]
    assert {r.webhook_id for r in again} == sent
    assert all(r.verified for r in again)
    assert stack.cli("admin", "replay-webhooks", "--batch", str(batch["id"]))["count"] == 0


async def test_a_new_plan_and_a_revoked_token_apply_to_the_next_call(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = stack.cli("admin", "create-org", "--name", "p", "--plan", "pro", "--credits", "100")
    url = f"{stack.base_url}{LOOKUP}"
    six = {"domains": [f"d{i}.test" for i in range(6)]}

    stack.cli("admin", "set-plan", org["org_id"], "tiny")  # 5 units a month
    status, _, body = await post_json(http, url, six, bearer(org["token"]))
    assert (status, body["code"]) == (429, "quota_exceeded"), body

    stack.cli("admin", "revoke-token", org["token_id"])
    status, _, body = await post_json(http, url, {"domains": ["a.test"]}, bearer(org["token"]))
    assert status == 401, body


def _balance(stack: RunningStack, org: dict[str, Any]) -> int:
    return int(stack.cli("admin", "show-org", org["org_id"])["credit_balance"])


def _admin_error(stack: RunningStack, *args: str) -> str:
    done = subprocess.run(
        [str(BIN), "admin", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    return str(json.loads(done.stdout)["error"])


# Each CLI run starts a Python process (seconds on a busy machine); these make several.
@pytest.mark.timeout(300)
async def test_retry_failed_queues_a_charged_batch_of_exactly_the_failed_items(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = stack.cli("admin", "create-org", "--name", "r", "--plan", "pro", "--credits", "5")
    lookup = f"{stack.base_url}{LOOKUP}"
    domains = ["plain.test", "example.com", "wp.test", "foo.bar"]  # no network: two fail
    _, _, created = await post_json(http, lookup, {"domains": domains}, bearer(org["token"]))
    done = await poll_lookup(http, stack.base_url, created["id"], org["token"])
    failed = [r["domain"] for r in done["results"] if r["status"] == "failed"]
    assert failed == ["example.com", "foo.bar"]
    assert _balance(stack, org) == 3  # 5 - 4 charged + 2 refunded

    retried = stack.cli("admin", "retry-failed", str(created["id"]))

    assert (retried["retry_of"], retried["org_id"], retried["family"]) == (
        created["id"], org["org_id"], "lookup",
    )  # fmt: skip
    assert (retried["item_count"], retried["credits_charged"]) == (2, 2)
    # Queued through the outbox: intake's relay publishes it, the processor runs it.
    again = await poll_lookup(http, stack.base_url, retried["batch_id"], org["token"])
    assert again["status"] == "finished"
    assert [r["domain"] for r in again["results"]] == failed
    shown = stack.cli("admin", "show-org", org["org_id"])
    entries = [
        (e["kind"], e["amount"]) for e in shown["ledger"] if e["batch_id"] == retried["batch_id"]
    ]
    assert entries == [("refund", 2), ("charge", -2)]  # newest first
    assert shown["usage"]["units"] == 6  # metered like any batch
    assert shown["credit_balance"] == 3  # they failed again, and were refunded again

    # A batch whose items all succeeded has nothing to retry; one the org cannot pay
    # for is refused, and nothing is charged.
    _, _, clean = await post_json(
        http, lookup, {"domains": ["plain.test", "wp.test", "acme.test"]}, bearer(org["token"])
    )
    await poll_lookup(http, stack.base_url, clean["id"], org["token"])
    assert "no failed items" in _admin_error(stack, "retry-failed", str(clean["id"]))
    assert "insufficient credits" in _admin_error(stack, "retry-failed", str(created["id"]))
    assert _balance(stack, org) == 0


def _kafka(stack: RunningStack) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        work_topic=stack.env["BATCHPLANE_WORK_TOPIC"],
        dead_letter_topic=stack.env["BATCHPLANE_DEAD_LETTER_TOPIC"],
    )


async def _queued_lookup(stack: RunningStack, org: dict[str, Any], domains: list[str]) -> int:
    """A lookup batch stored and queued as intake stores one, whose work records never
    reached the processor (nothing in the outbox: they are dead letters)."""
    database = Database(stack.env["DATABASE_URL"], pool_size=1)
    try:
        async with database.transaction() as session:
            batch = await batches.create_batch(
                session,
                org_id=org["org_id"],
                family="lookup",
                inputs=domains,
                params={
                    "recompute": False,
                    "max_age_ms": 604_800_000,
                    "list_id": None,
                    "webhook_url": None,
                    "unit_credits": 0,
                },
                created_by=org["user_id"],
                credits_charged=0,
                now=SystemClock().now(),
            )
        return batch.id
    finally:
        await database.dispose()


async def _progress(stack: RunningStack, batch_id: int) -> tuple[str, int]:
    """The batch's status and how many of its items the processor has recorded."""
    database = Database(stack.env["DATABASE_URL"], pool_size=1)
    try:
        async with database.transaction() as session:
            batch = await batches.find_batch(session, batch_id=batch_id)
            assert batch is not None
            return batch.status, batch.processed_count
    finally:
        await database.dispose()


async def _produce(
    kafka: KafkaSettings, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _record_at(
    kafka: KafkaSettings, topic: str, offset: int, timeout_s: float = 30
) -> ConsumerRecord[bytes, bytes]:
    """The record at `offset` of a one-partition topic, once it is there."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, offset)
        fetched = await consumer.getmany(partition, timeout_ms=int(timeout_s * 1000))
        assert fetched, f"nothing at {topic}[0]@{offset} within {timeout_s}s"
        record: ConsumerRecord[bytes, bytes] = fetched[partition][0]
        return record
    finally:
        await consumer.stop()


async def _dead_letter_end(kafka: KafkaSettings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    await consumer.start()
    try:
        partition = TopicPartition(kafka.dead_letter_topic, 0)
        return int((await consumer.end_offsets([partition]))[partition])
    finally:
        await consumer.stop()


def _dead_letter_headers(source_topic: str) -> list[tuple[str, bytes]]:
    return [
        ("x-source-topic", source_topic.encode()),
        ("x-source-partition", b"0"),
        ("x-source-offset", b"0"),
        ("x-reason", b"undecodable work item"),
    ]


async def _create_topic(kafka: KafkaSettings, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


@pytest.mark.timeout(300)
async def test_dead_letters_are_replayed_to_their_topic_once(stack: RunningStack) -> None:
    kafka = _kafka(stack)
    org = stack.cli("admin", "create-org", "--name", "d", "--plan", "pro")
    batch_id = await _queued_lookup(stack, org, ["plain.test", "wp.test"])
    first, second = (
        work_records(
            kafka.work_topic,
            batch_id=batch_id,
            org_id=org["org_id"],
            family="lookup",
            item_indexes=[index],
        )[0]
        for index in (0, 1)
    )
    # The shape the processor dead-letters in (`WorkConsumer._dead_letter`); the second
    # record carries no origin, as a writer without the header would leave it; the third
    # came from another topic, and has a header of its own besides.
    other = f"{kafka.work_topic}.other"
    await _create_topic(kafka, other)
    await _produce(
        kafka,
        kafka.dead_letter_topic,
        [
            (first.key, first.value, _dead_letter_headers(kafka.work_topic)),
            (second.key, second.value, []),
            (b"k", b"elsewhere", [*_dead_letter_headers(other), ("traceparent", b"00-t")]),
        ],
    )

    one = stack.cli("admin", "replay-dead-letters", "--limit", "1")
    assert (one["replayed"], one["by_topic"]) == (1, {kafka.work_topic: 1})
    rest = stack.cli("admin", "replay-dead-letters")
    assert (rest["replayed"], rest["by_topic"]) == (2, {kafka.work_topic: 1, other: 1})

    # Processed (whatever the fetches' outcome): both items recorded, the batch done.
    deadline = time.monotonic() + 60
    while (progress := await _progress(stack, batch_id)) != ("finished", 2):
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.2)
    elsewhere = await _record_at(kafka, other, 0)
    assert (elsewhere.key, elsewhere.value) == (b"k", b"elsewhere")
    assert list(elsewhere.headers) == [("traceparent", b"00-t")]  # no dead-letter headers
    # Offsets were committed: a second run has nothing left.
    assert stack.cli("admin", "replay-dead-letters")["replayed"] == 0
    assert "has no partition 7" in _admin_error(stack, "replay-dead-letters", "--partition", "7")

    # A record the processor itself dead-letters names its origin; replayed, it reaches
    # the work topic again, and one still undecodable comes back for a later run.
    end = await _dead_letter_end(kafka)
    key, value = f"poison-{uuid.uuid4().hex[:8]}".encode(), b"\xff\x00 not protobuf"
    await _produce(kafka, kafka.work_topic, [(key, value, [])])
    dead = await _record_at(kafka, kafka.dead_letter_topic, end)
    assert (dead.key, dead.value) == (key, value)
    assert dict(dead.headers)["x-source-topic"] == kafka.work_topic.encode()
    assert stack.cli("admin", "replay-dead-letters")["by_topic"] == {kafka.work_topic: 1}
    back = await _record_at(kafka, kafka.dead_letter_topic, end + 1)
    assert (back.key, back.value) == (key, value)
    assert dict(back.headers)["x-source-offset"] != dict(dead.headers)["x-source-offset"]
