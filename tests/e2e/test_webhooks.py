"""Signed webhooks for async batches (contract 4) through the whole stack: intake →
Kafka → processor → events → notifier → a receiver that verifies every signature."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import OwnStack, RunningStack

LOOKUP = "/api/v1/bulk/lookup"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def _org(stack: RunningStack, receiver: Receiver) -> dict[str, Any]:
    org = stack.cli("admin", "create-org", "--name", "w", "--plan", "pro", "--credits", "100")
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    return org


async def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert condition()


async def _deliveries(
    stack: RunningStack, http: aiohttp.ClientSession, token: str, batch_id: int
) -> list[dict[str, Any]]:
    status, body = await get_json(
        http, f"{stack.base_url}/api/v1/webhooks/deliveries?batch_id={batch_id}", bearer(token)
    )
    assert status == 200, body
    return list(body["deliveries"])


async def test_item_and_completion_webhooks_are_signed_and_complete(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver)
    name = f"ok-{uuid.uuid4().hex[:8]}"
    body = {"domains": ["plain.test", "not a domain"], "webhook_url": receiver.url(name)}

    status, _, batch = await post_json(
        http, f"{stack.base_url}{LOOKUP}", body, bearer(org["token"])
    )
    assert status == 202, batch
    final = await poll_lookup(http, stack.base_url, batch["id"], org["token"])
    await _until(lambda: len(receiver.at(name)) == 3)

    got = receiver.at(name)
    assert all(r.verified for r in got)
    assert len({r.webhook_id for r in got}) == 3
    items, completion = got[:2], got[2]
    assert {r.body["event"] for r in items} == {"item_completed"}
    assert completion.body["event"] == "batch_completed"
    assert completion.body["status"] == "finished"
    assert completion.body["counts"] == {"total": 2, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert sorted(completion.body["items"], key=lambda i: i["item_index"]) == sorted(
        (r.body for r in items), key=lambda i: i["item_index"]
    )
    for message in (r.body for r in got):
        assert message["batch_id"] == batch["id"]
        assert message["completed_at"] == message["discovered_at"]
    failed = next(r.body for r in items if r.body["status"] == "failed")
    assert failed["error"] == "invalid_domain"
    assert final["error_count"] == 1


async def test_a_flaky_receiver_gets_the_message_with_the_same_id(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver)
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    receiver.failures[name] = 2  # the first attempt and the first retry fail
    _, _, batch = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test"], "webhook_url": receiver.url(name)},
        bearer(org["token"]),
    )

    await _until(lambda: any(r.body["event"] == "batch_completed" for r in receiver.at(name)))

    deliveries = await _deliveries(stack, http, org["token"], batch["id"])
    assert {d["status"] for d in deliveries} == {"delivered"}
    item = next(d for d in deliveries if d["event"] == "item_completed")
    ids = {r.webhook_id for r in receiver.at(name) if r.body["event"] == "item_completed"}
    assert ids == {item["id"]}
    assert item["attempts"] >= 2
    assert [a["verdict"] for a in item["attempt_log"]][-1] == "delivered"
    assert all(a["verdict"] == "retry" for a in item["attempt_log"][:-1])


async def test_a_dead_endpoint_is_dead_lettered_then_redelivered_through_the_api(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver)
    name = f"down-{uuid.uuid4().hex[:8]}"
    receiver.statuses[name] = 500
    _, _, batch = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test"], "webhook_url": receiver.url(name)},
        bearer(org["token"]),
    )

    async def statuses() -> set[str]:
        return {d["status"] for d in await _deliveries(stack, http, org["token"], batch["id"])}

    deadline = time.monotonic() + 30
    while await statuses() != {"dead"} and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    deliveries = await _deliveries(stack, http, org["token"], batch["id"])
    assert {d["status"] for d in deliveries} == {"dead"}
    assert all(d["attempts"] == 4 for d in deliveries)  # the first try and three retries

    del receiver.statuses[name]
    item = next(d for d in deliveries if d["event"] == "item_completed")
    status, _, again = await post_json(
        http,
        f"{stack.base_url}/api/v1/webhooks/deliveries/{item['id']}/redeliver",
        {},
        bearer(org["token"]),
    )
    assert status == 202, again
    # Four refused attempts before, then the redelivery, with the same webhook-id.
    await _until(lambda: len([r for r in receiver.at(name) if r.webhook_id == item["id"]]) == 5)
    assert receiver.at(name)[-1].verified
    redelivered = next(
        d
        for d in await _deliveries(stack, http, org["token"], batch["id"])
        if d["id"] == item["id"]
    )
    assert redelivered["status"] == "delivered"


async def test_410_disables_the_endpoint(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver)
    name = f"gone-{uuid.uuid4().hex[:8]}"
    receiver.statuses[name] = 410
    _, _, batch = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test"], "webhook_url": receiver.url(name)},
        bearer(org["token"]),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        deliveries = await _deliveries(stack, http, org["token"], batch["id"])
        if len(deliveries) == 2 and {d["status"] for d in deliveries} == {"disabled"}:
            break
        await asyncio.sleep(0.2)
    assert {d["status"] for d in deliveries} == {"disabled"}
    assert len(receiver.at(name)) == 1  # nothing more was sent after the 410


async def test_webhook_urls_must_be_https_unless_allowed(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver)
    status, _, answer = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test"], "webhook_url": "http://example.com/hook"},
        bearer(org["token"]),
    )
    assert status == 422
    assert "https" in answer["error"]


async def test_a_hanging_endpoint_does_not_delay_healthy_ones(
    own_stack: OwnStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    # A stack of its own, whose attempts may hang for 30 s before the notifier gives up:
    # longer than this test waits for the healthy endpoints.
    patient = {"BATCHPLANE_WEBHOOK_TIMEOUT_S": "30", "BATCHPLANE_WEBHOOK_LEASE_S": "40"}
    async with own_stack(patient) as stack, serve_receiver() as elsewhere:
        slow_org = _org(stack, receiver)
        slow = f"hang-{uuid.uuid4().hex[:8]}"
        receiver.delays[slow] = 600  # until the notifier hangs up
        slow_domains = ["not a domain", "-a-", "-b-", "-c-", "-d-", "-e-"]
        status, _, slow_batch = await post_json(
            http,
            f"{stack.base_url}{LOOKUP}",
            {"domains": slow_domains, "webhook_url": receiver.url(slow)},
            bearer(slow_org["token"]),
        )
        assert status == 202, slow_batch
        # The endpoint's share of attempts (BATCHPLANE_WEBHOOK_PER_ENDPOINT), all hanging.
        await _until(lambda: receiver.in_flight[slow] == 4)

        # Healthy endpoints of other organisations: another path on the same server, and
        # another server.
        healthy = []
        for where in (receiver, elsewhere):
            org = _org(stack, where)
            name = f"ok-{uuid.uuid4().hex[:8]}"
            status, _, batch = await post_json(
                http,
                f"{stack.base_url}{LOOKUP}",
                {
                    "domains": ["plain.test", "shop.test", "not a domain"],
                    "webhook_url": where.url(name),
                },
                bearer(org["token"]),
            )
            assert status == 202, batch
            healthy.append((where, name, org, batch))

        def all_completed() -> bool:
            return all(
                any(r.body["event"] == "batch_completed" for r in where.at(name))
                for where, name, _, _ in healthy
            )

        await _until(all_completed, timeout_s=20)

        for where, name, org, batch in healthy:
            assert len(where.at(name)) == 4  # three items and the completion
            assert all(r.verified for r in where.at(name))
            deliveries = await _deliveries(stack, http, org["token"], batch["id"])
            assert len(deliveries) == 4
        # Meanwhile the slow endpoint's first attempts are all still hanging.
        assert receiver.in_flight[slow] == 4
        assert len(receiver.at(slow)) == 4
        slow_deliveries = await _deliveries(stack, http, slow_org["token"], slow_batch["id"])
        assert len(slow_deliveries) == len(slow_domains) + 1
        assert {d["status"] for d in slow_deliveries} == {"pending"}
        assert all(d["attempts"] == 0 for d in slow_deliveries)
