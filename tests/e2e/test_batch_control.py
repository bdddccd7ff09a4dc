"""Batch control (contract 4): Watch streams over gRPC, cancel and retry-failed through
Envoy and gRPC, on the whole stack. Scrape jobs on `busy.test` take 0.3 s each, so a
batch with `parallel_jobs: 1` runs long enough to be watched and cancelled mid-way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

from batchplane.api.batches.v1 import batches_pb2, batches_pb2_grpc

# Jobs of the cancelled batch: 0.3 s each, one at a time, so about 6 s to cancel in.
JOBS = 20
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


def _org(stack: RunningStack, credits: int = 100) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "c", "--plan", "pro", "--credits", str(credits)
    )


def _balance(stack: RunningStack, org: dict[str, Any]) -> int:
    return int(stack.cli("admin", "show-org", org["org_id"])["credit_balance"])


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


@pytest_asyncio.fixture(loop_scope="session")
async def batches_stub(
    stack: RunningStack,
) -> AsyncIterator[batches_pb2_grpc.BatchServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['intake']}") as channel:
        yield batches_pb2_grpc.BatchServiceStub(channel)


async def _slow_scrape(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    token: str,
    jobs: int,
    tag: str,
    webhook_url: str | None = None,
) -> int:
    body: dict[str, Any] = {
        "urls": [f"http://busy.test/{tag}/{i}" for i in range(jobs)],
        "schema": SCHEMA,
        "options": {"parallel_jobs": 1},
    }
    if webhook_url:
        body["webhook_url"] = webhook_url
    status, _, answer = await post_json(
        http, f"{stack.base_url}/v1/scrape/batch", body, bearer(token)
    )
    assert status == 200, answer
    return int(answer["batch_id"].removeprefix("batch_"))


async def _watch(
    stub: batches_pb2_grpc.BatchServiceStub,
    token: str,
    batch_id: int,
    *,
    cursor: str = "",
    stop_after_items: int | None = None,
) -> list[batches_pb2.BatchUpdate]:
    """Updates of one watch, until the stream ends (or after `stop_after_items`)."""
    call = stub.WatchBatch(
        batches_pb2.WatchBatchRequest(batch_id=batch_id, cursor=cursor),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=60,
    )
    updates: list[batches_pb2.BatchUpdate] = []
    async for update in call:
        updates.append(update)
        items = sum(1 for u in updates if u.HasField("item"))
        if stop_after_items is not None and items >= stop_after_items:
            call.cancel()
            break
    return updates


def _fetched(sites: SiteServer, tag: str) -> list[str]:
    return [url for url in sites.requested if url.startswith(f"busy.test/{tag}/")]


def _items(updates: list[batches_pb2.BatchUpdate]) -> list[int]:
    return [u.item.item_index for u in updates if u.HasField("item")]


async def test_a_watch_sees_every_item_once_and_the_end(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    batches_stub: batches_pb2_grpc.BatchServiceStub,
) -> None:
    org = _org(stack)
    batch_id = await _slow_scrape(stack, http, org["token"], 8, "watch")

    updates = await _watch(batches_stub, org["token"], batch_id)

    assert not updates[0].HasField("item")  # the snapshot
    assert updates[0].batch.id == batch_id
    assert sorted(_items(updates)) == list(range(8))
    # Most items ended while the watch was open: they came from events, not the snapshot.
    assert updates[0].batch.progress.processed < 8
    last = updates[-1].batch
    assert (last.status, last.progress.processed, last.progress.succeeded) == ("finished", 8, 8)
    assert [u.item.status for u in updates if u.HasField("item")] == ["succeeded"] * 8
    counts = [u.batch.progress.processed for u in updates]
    assert counts == sorted(counts)


async def test_a_resumed_watch_gets_the_rest_exactly_once(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    batches_stub: batches_pb2_grpc.BatchServiceStub,
) -> None:
    org = _org(stack)
    batch_id = await _slow_scrape(stack, http, org["token"], 8, "resume")

    first = await _watch(batches_stub, org["token"], batch_id, stop_after_items=3)
    await asyncio.sleep(0.8)  # items end while nobody watches
    rest = await _watch(batches_stub, org["token"], batch_id, cursor=first[-1].cursor)

    assert len(_items(first)) == 3
    assert sorted(_items(first) + _items(rest)) == list(range(8))
    assert rest[-1].batch.status == "finished"


async def test_a_watch_of_another_organisations_batch_is_not_found(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    batches_stub: batches_pb2_grpc.BatchServiceStub,
) -> None:
    owner, other = _org(stack), _org(stack)
    batch_id = await _slow_scrape(stack, http, owner["token"], 1, "private")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _watch(batches_stub, other["token"], batch_id)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad_cursor:
        await _watch(batches_stub, owner["token"], batch_id, cursor="not-a-cursor")
    assert bad_cursor.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_mid_run_refunds_the_unstarted_items_and_ends_cancelled(
    stack: RunningStack,
    sites: SiteServer,
    http: aiohttp.ClientSession,
    batches_stub: batches_pb2_grpc.BatchServiceStub,
    receiver: Receiver,
) -> None:
    org = _org(stack, credits=100)
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    batch_id = await _slow_scrape(
        stack, http, org["token"], JOBS, "cancel", webhook_url=receiver.url("cancel")
    )
    watching = asyncio.create_task(_watch(batches_stub, org["token"], batch_id))
    url = f"{stack.base_url}/api/v1/batches/{batch_id}"
    deadline = time.monotonic() + 30
    while len(set(_fetched(sites, "cancel"))) < 2:  # two jobs have started
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    status, _, cancelled = await post_json(http, f"{url}/cancel", {}, bearer(org["token"]))

    assert status == 200, cancelled
    assert cancelled["cancelled_at"] is not None
    updates = await asyncio.wait_for(watching, 30)
    final = updates[-1].batch
    progress = final.progress
    assert final.status == "cancelled"
    assert progress.cancelled >= 1 and progress.succeeded >= 2
    assert progress.succeeded + progress.cancelled == JOBS
    assert (progress.processed, progress.failed) == (JOBS, 0)
    assert sorted(_items(updates)) == list(range(JOBS))
    # Only the jobs that started were fetched, none that the cancel took (a job may be
    # fetched twice if a rebalance redelivers it, and still count once).
    succeeded = {u.item.item_index for u in updates if u.item.status == "succeeded"}
    assert len(succeeded) == progress.succeeded
    assert set(_fetched(sites, "cancel")) == {f"busy.test/cancel/{i}" for i in succeeded}
    # Charged JOBS, refunded the cancelled ones through the ledger.
    assert final.credits_refunded == progress.cancelled
    assert _balance(stack, org) == 100 - progress.succeeded
    _, polled = await get_json(http, f"{stack.base_url}/v1/scrape/batch/batch_{batch_id}", {
        "X-API-Key": org["token"]
    })  # fmt: skip
    assert [j["status"] for j in polled["jobs"]].count("cancelled") == progress.cancelled

    status, _, again = await post_json(http, f"{url}/cancel", {}, bearer(org["token"]))
    assert (status, again["code"]) == (409, "batch_not_cancellable")

    # Webhooks say so: each item's outcome, then a completion marked cancelled.
    deadline = time.monotonic() + 30
    while len({r.webhook_id for r in receiver.at("cancel")}) < JOBS + 1:
        assert time.monotonic() < deadline, receiver.at("cancel")
        await asyncio.sleep(0.1)
    # At least once: a message may come twice, always with its webhook-id.
    bodies = list({r.webhook_id: r.body for r in receiver.at("cancel")}.values())
    assert all(r.verified for r in receiver.at("cancel"))
    items = [b for b in bodies if b["event"] == "item_completed"]
    assert sorted(b["status"] for b in items) == sorted(
        ["succeeded"] * progress.succeeded + ["cancelled"] * progress.cancelled
    )
    (completion,) = [b for b in bodies if b["event"] == "batch_completed"]
    assert completion["status"] == "cancelled"
    assert completion["counts"] == {
        "total": JOBS, "succeeded": progress.succeeded, "failed": 0, "cancelled": progress.cancelled,
    }  # fmt: skip


async def test_retry_creates_a_linked_batch_of_exactly_the_failed_items(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, credits=100)
    domains = ["plain.test", "example.com", "wp.test", "foo.bar"]  # no network: two fail
    _, _, created = await post_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup", {"domains": domains}, bearer(org["token"])
    )
    done = await poll_lookup(http, stack.base_url, created["id"], org["token"])
    failed = [r["domain"] for r in done["results"] if r["status"] == "failed"]
    assert failed == ["example.com", "foo.bar"]
    before = _balance(stack, org)

    status, _, retried = await post_json(
        http,
        f"{stack.base_url}/api/v1/batches/{created['id']}/retry",
        {},
        {**bearer(org["token"]), "Idempotency-Key": "retry-1"},
    )

    assert status == 201, retried
    assert (retried["retry_of"], retried["family"]) == (created["id"], "lookup")
    assert (retried["progress"]["requested"], retried["credits_charged"]) == (2, 2)
    again = await poll_lookup(http, stack.base_url, retried["id"], org["token"])
    assert [r["domain"] for r in again["results"]] == failed
    # They fail again here (no network) and are refunded again, like any batch.
    assert _balance(stack, org) == before
    # The same key replays the answer instead of retrying twice.
    status, _, replayed = await post_json(
        http,
        f"{stack.base_url}/api/v1/batches/{created['id']}/retry",
        {},
        {**bearer(org["token"]), "Idempotency-Key": "retry-1"},
    )
    assert (status, replayed["id"]) == (201, retried["id"])
    # A batch without failed items has nothing to retry.
    _, _, clean = await post_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup", {"domains": ["plain.test"]},
        bearer(org["token"]),
    )  # fmt: skip
    await poll_lookup(http, stack.base_url, clean["id"], org["token"])
    status, _, nothing = await post_json(
        http, f"{stack.base_url}/api/v1/batches/{clean['id']}/retry", {}, bearer(org["token"])
    )
    assert (status, nothing["code"]) == (409, "nothing_to_retry")


async def test_batch_control_is_private_and_needs_the_familys_scope(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    owner, other = _org(stack), _org(stack)
    _, _, created = await post_json(
        http,
        f"{stack.base_url}/api/v1/bulk/lookup",
        {"domains": ["plain.test"]},
        bearer(owner["token"]),
    )
    url = f"{stack.base_url}/api/v1/batches/{created['id']}"
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        async with http.request(
            method, f"{url}{path}", json={} if method == "POST" else None,
            headers=bearer(other["token"]),
        ) as response:  # fmt: skip
            assert response.status == 404, path
            assert (await response.json())["code"] == "not_found"
    scrape_only = stack.cli(
        "admin", "create-token", "--org", owner["org_id"], "--scopes", "scrape.read"
    )
    status, body = await get_json(http, url, bearer(scrape_only["token"]))
    assert (status, body["code"]) == (403, "insufficient_scope")
