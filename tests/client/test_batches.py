"""The batch helpers on the whole stack: submit_and_wait, watch (resumed after the test
cuts the connection under it), cancel and retry_failed. Scrape jobs on `busy.test` take
0.3 s each, so a batch with `parallel_jobs: 1` is still running while it is watched."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from tests.client.conftest import Balance, ClientFor, NewOrg
from tests.support.proxies import tcp_proxy
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

from batchplane.client import BatchResult, Conflict, ScrapeBatchBody, WatchUpdate

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}
WAIT_S = 120.0


def _slow_scrape(tag: str, jobs: int) -> ScrapeBatchBody:
    return {
        "urls": [f"http://busy.test/{tag}/{i}" for i in range(jobs)],
        "schema": SCHEMA,
        "options": {"parallel_jobs": 1},
    }


def _indexes(result: BatchResult) -> list[int]:
    return [item.index for item in result.items]


async def test_submit_and_wait_returns_every_lookup_item_once(
    client_for: ClientFor, new_org: NewOrg, balance: Balance
) -> None:
    org = new_org(credits=10)
    domains = ["wp.test", "plain.test", "example.com"]  # no network: example.com fails

    async with client_for(org) as client:
        result = await client.submit_and_wait("lookup", {"domains": domains}, wait_timeout_s=WAIT_S)

    batch = result.batch
    assert (batch.family, batch.status) == ("lookup", "finished")
    assert (batch.progress.requested, batch.progress.processed) == (3, 3)
    assert _indexes(result) == [0, 1, 2]
    wordpress, plain, unreachable = result.items
    assert wordpress.status == "succeeded"
    assert "WordPress" in {t["name"] for t in wordpress.result["technologies"]}
    assert (plain.status, plain.error_code) == ("succeeded", None)
    assert unreachable.status == "failed"
    assert unreachable.error_code
    assert unreachable.result is None
    assert [i.index for i in result.failed] == [2]
    assert balance(org) == 10 - 2  # the failed item was refunded


async def test_submit_and_wait_follows_a_slow_scrape_batch_to_its_end(
    client_for: ClientFor, new_org: NewOrg, sites: SiteServer
) -> None:
    org = new_org()

    async with client_for(org) as client:
        result = await client.submit_and_wait(
            "scrape", _slow_scrape("wait", 6), wait_timeout_s=WAIT_S
        )

    assert (result.batch.family, result.batch.status) == ("scrape", "finished")
    assert _indexes(result) == list(range(6))
    assert [item.status for item in result.items] == ["succeeded"] * 6
    assert all(isinstance(item.result["items"], list) for item in result.items)
    fetched = [url for url in sites.requested if url.startswith("busy.test/wait/")]
    assert sorted(fetched) == sorted(f"busy.test/wait/{i}" for i in range(6))


async def test_a_watch_resumes_from_its_cursor_after_the_connection_is_cut(
    stack: RunningStack, client_for: ClientFor, new_org: NewOrg, sites: SiteServer
) -> None:
    """A chunk's outcomes are recorded together, so the test splits the stream on purpose:
    job 0 hangs on slow.test (until the fetch times out, 10 s), and cancelling the batch
    meanwhile ends the other nine at once. The test cuts the connection after the first of
    those, while job 0's outcome and the batch's end are still to come."""
    org = new_org()
    tag = uuid.uuid4().hex[:8]
    body: ScrapeBatchBody = {
        "urls": [f"http://slow.test/{tag}", *(f"http://busy.test/{tag}/{i}" for i in range(9))],
        "schema": SCHEMA,
        "options": {"parallel_jobs": 1},
    }
    async with (
        tcp_proxy(stack.ports["intake"]) as tcp,
        client_for(org, target=f"127.0.0.1:{tcp.port}") as client,
    ):
        created = await client.scrapes.create(body)
        updates: list[tuple[int, WatchUpdate]] = []  # with the connection it came on
        async for update in client.watch(created.batch_id, timeout_s=WAIT_S):
            updates.append((tcp.connections, update))
            if len(updates) == 1:
                await _until_fetched(sites, f"slow.test/{tag}")
                await client.cancel(created.batch_id)
            elif update.item is not None and tcp.connections == 1:
                await tcp.reset_connections()

    items = [(connection, u.item) for connection, u in updates if u.item is not None]
    assert sorted(item.index for _, item in items) == list(range(10))  # each exactly once
    assert tcp.connections == 2  # the watch reconnected once, transparently
    [(hung_on, hung)] = [(c, item) for c, item in items if item.index == 0]
    assert hung_on == 2  # job 0 ended after the cut: the resumed stream brought it
    assert hung.status in ("failed", "succeeded")
    assert "cancelled" in {item.status for _, item in items if item.index > 0}
    assert updates[-1][1].terminal
    assert updates[-1][1].batch.status == "cancelled"


async def _until_fetched(sites: SiteServer, url: str) -> None:
    deadline = time.monotonic() + 60
    while url not in sites.requested:
        assert time.monotonic() < deadline, f"{url} was never fetched"
        await asyncio.sleep(0.02)


async def test_cancel_ends_a_running_batch_cancelled_with_every_item_reported(
    client_for: ClientFor, new_org: NewOrg, sites: SiteServer, balance: Balance
) -> None:
    org = new_org(credits=100)
    async with client_for(org) as client:
        created = await client.scrapes.create(_slow_scrape("cancel", 10))
        waiting = asyncio.create_task(client.wait(created.batch_id, timeout_s=WAIT_S))
        deadline = time.monotonic() + 60
        while not any(url.startswith("busy.test/cancel/") for url in sites.requested):
            assert time.monotonic() < deadline, "no job started"
            await asyncio.sleep(0.02)

        cancelled = await client.cancel(created.batch_id)
        result = await asyncio.wait_for(waiting, WAIT_S)
        with pytest.raises(Conflict) as refused:
            await client.cancel(created.batch_id)

    assert refused.value.code == "batch_not_cancellable"
    assert cancelled.cancelled_at.HasField("string_value")
    assert result.batch.status == "cancelled"
    assert _indexes(result) == list(range(10))
    statuses = [item.status for item in result.items]
    assert statuses.count("cancelled") == result.batch.progress.cancelled >= 1
    assert set(statuses) <= {"succeeded", "cancelled"}
    assert balance(org) == 100 - statuses.count("succeeded")


async def test_retry_failed_creates_a_linked_batch_the_client_can_wait_for(
    client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    async with client_for(org) as client:
        first = await client.submit_and_wait(
            "lookup", {"domains": ["plain.test", "foo.bar"]}, wait_timeout_s=WAIT_S
        )
        assert [item.status for item in first.items] == ["succeeded", "failed"]

        retried = await client.retry_failed(first.batch.id, idempotency_key="retry-once")
        replayed = await client.retry_failed(first.batch.id, idempotency_key="retry-once")
        again = await client.wait(retried.id, timeout_s=WAIT_S)
        clean = await client.submit_and_wait(
            "lookup", {"domains": ["plain.test"]}, wait_timeout_s=WAIT_S
        )
        with pytest.raises(Conflict) as nothing:
            await client.retry_failed(clean.batch.id)

    assert nothing.value.code == "nothing_to_retry"
    assert retried.retry_of.number_value == first.batch.id
    assert (retried.family, retried.progress.requested) == ("lookup", 1)
    assert replayed.id == retried.id  # same key: the first answer again
    assert again.batch.status == "finished"
    assert [(item.index, item.status) for item in again.items] == [(0, "failed")]
