"""Faults on the real stack: services SIGKILLed mid-batch, and stopped with SIGTERM.

Each test runs on a stack of its own (it kills its services), with slow fixture sites so
that the fault lands while items are in flight. What is checked is the stored truth:
every item terminal exactly once, the batch's counters, the credits ledger, the events
on the topic and the webhooks a receiver got.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.faults import (
    books,
    fetch,
    item_outcomes,
    private_stack,
    read_events,
    restartable_broker,
)
from tests.support.proxies import tcp_proxy
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sites import PLAIN_PAGE, Site, SiteServer
from tests.support.stack import OwnStack, RunningStack

from batchplane.db import outbox

LOOKUP = "/api/v1/bulk/lookup"
CREDITS = 200


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def slow_sites(sites: SiteServer, count: int, *, delays: list[float]) -> list[str]:
    """Adds `count` fixture sites answering after the given delays (cycled)."""
    tag = uuid.uuid4().hex[:6]
    hosts = [f"slow{i}-{tag}.test" for i in range(count)]
    for i, host in enumerate(hosts):
        sites.sites[host] = Site(
            PLAIN_PAGE, {"Server": "nginx/1.24.0"}, delay=delays[i % len(delays)]
        )
    return hosts


async def until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


def database_url(stack: RunningStack) -> str:
    """Where the test reads the stack's database (never through a fault proxy)."""
    return stack.env.get("BATCHPLANE_TEST_DIRECT_DATABASE_URL") or stack.env["DATABASE_URL"]


async def terminal_items(stack: RunningStack, batch_id: int) -> int:
    rows = await fetch(
        database_url(stack),
        "SELECT count(*) AS n FROM batch_items WHERE batch_id = $1 AND status <> 'queued'",
        batch_id,
    )
    return int(rows[0]["n"])


async def new_pid(stack: RunningStack, service: str, old: int, timeout_s: float = 30) -> int:
    async def restarted() -> bool:
        return stack.pid(service) not in (None, old)

    await until(restarted, timeout_s, f"{service} to be restarted")
    pid = stack.pid(service)
    assert pid is not None
    return pid


async def healthy_again(http: aiohttp.ClientSession, stack: RunningStack) -> None:
    """Until the gateway's /healthz is 200 (intake serving) again."""

    async def serving() -> bool:
        async with http.get(f"{stack.base_url}/healthz") as response:
            return response.status == 200

    await until(serving, 30, "intake to serve again")


async def submit(
    http: aiohttp.ClientSession, stack: RunningStack, body: dict[str, Any], token: str
) -> dict[str, Any]:
    status, _, answer = await post_json(http, f"{stack.base_url}{LOOKUP}", body, bearer(token))
    assert status == 202, (status, answer)
    return dict(answer)


async def answers_until_back(
    http: aiohttp.ClientSession, stack: RunningStack, batch_id: int, token: str
) -> set[Any]:
    """GET the batch until intake answers it again; every distinct answer on the way."""
    answers: set[Any] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = await get_json(http, f"{stack.base_url}{LOOKUP}/{batch_id}", bearer(token))
        answers.add(200 if status == 200 else (status, body.get("code")))
        if status == 200:
            return answers
        await asyncio.sleep(0.05)
    raise AssertionError(f"intake did not come back: {answers}")


async def check_exactly_once(
    stack: RunningStack,
    org: dict[str, Any],
    batch_id: int,
    *,
    requested: int,
    failed: int,
    events_kept: bool = True,
) -> dict[str, Any]:
    """The batch is finished with exact counters, the ledger is exact and every item has
    exactly one outcome event; returns the numbers for the report."""
    ledger = await books(database_url(stack), org["org_id"])
    [batch] = ledger.batches
    assert batch["status"] == "finished", batch
    assert batch["processed_count"] == requested, batch
    assert batch["success_count"] == requested - failed, batch
    assert batch["error_count"] == failed, batch
    assert ledger.items == {"succeeded": requested - failed, "failed": failed}, ledger.items
    assert ledger.charged == requested, ledger
    assert ledger.refunded == failed == batch["credits_refunded"], ledger
    assert ledger.balance == CREDITS - requested + failed, ledger
    assert ledger.ledger_consistent, ledger
    numbers = {"balance": ledger.balance, "charged": ledger.charged, "refunded": ledger.refunded}
    if not events_kept:  # the broker lost the events published before it restarted
        return numbers
    events = await read_events(
        stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        stack.env["BATCHPLANE_EVENTS_TOPIC"],
        batch_id=batch_id,
    )
    outcomes = item_outcomes(events)
    # One outcome per item: a record published twice carries the same event id.
    assert sorted(outcomes) == list(range(requested)), outcomes
    assert all(len(ids) == 1 for ids in outcomes.values()), outcomes
    finished = {e.event_id for e in events if e.WhichOneof("kind") == "batch_finished"}
    assert len(finished) == 1, finished
    return {
        **numbers,
        "item_events": sum(len(ids) for ids in outcomes.values()),
        "event_records": len(events),
    }


async def check_webhooks(
    http: aiohttp.ClientSession,
    stack: RunningStack,
    org: dict[str, Any],
    receiver: Receiver,
    name: str,
    batch_id: int,
    requested: int,
) -> dict[str, int]:
    """Every message arrived at least once, every copy of a message with one webhook-id."""
    expected = {("item_completed", i) for i in range(requested)} | {("batch_completed", None)}

    async def all_arrived() -> bool:
        got = {(r.body["event"], r.body.get("item_index")) for r in receiver.at(name)}
        return got == expected

    await until(all_arrived, 60, "every webhook")
    ids: dict[tuple[str, int | None], set[str]] = defaultdict(set)
    for message in receiver.at(name):
        assert message.verified
        ids[(message.body["event"], message.body.get("item_index"))].add(message.webhook_id)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == len(expected)
    status, body = await get_json(
        http,
        f"{stack.base_url}/api/v1/webhooks/deliveries?batch_id={batch_id}&limit=500",
        bearer(org["token"]),
    )
    assert status == 200, body
    # One delivery per message: no outcome was queued twice.
    assert len(body["deliveries"]) == len(expected), len(body["deliveries"])
    return {"messages": len(expected), "received": len(receiver.at(name))}


async def outbox_records(stack: RunningStack) -> list[outbox.Record]:
    """The records waiting in the stack's outbox (its packs, decoded)."""
    packs = await fetch(database_url(stack), "SELECT records FROM outbox_packs ORDER BY id")
    return [record for pack in packs for record in outbox.unpack(pack["records"])]


async def test_a_processor_killed_mid_batch_loses_and_repeats_nothing(
    own_stack: OwnStack,
    sites: SiteServer,
    http: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    # Small chunks, two at a time: at the kill some items are stored, some are being
    # fetched and some have not been fetched from the broker yet.
    hosts = slow_sites(sites, 30, delays=[0.4, 1.2, 2.5])
    async with own_stack(
        {"BATCHPLANE_PROCESSOR_CHUNK_ITEMS": "3", "BATCHPLANE_PROCESSOR_CHUNKS_IN_FLIGHT": "2"}
    ) as stack:
        org = stack.cli(
            "admin", "create-org", "--name", "k", "--plan", "pro", "--credits", str(CREDITS)
        )
        receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
        name = f"pk-{uuid.uuid4().hex[:8]}"
        domains = [*hosts, "not a domain", "-bad-", "x..y"]
        batch = await submit(
            http, stack, {"domains": domains, "webhook_url": receiver.url(name)}, org["token"]
        )

        def fetching() -> int:
            return sum(sites.in_flight.get(h, 0) for h in hosts)

        async def some_done_more_in_flight() -> bool:
            return fetching() > 0 and await terminal_items(stack, batch["id"]) >= 6

        await until(some_done_more_in_flight, 60, "the first outcomes")
        old = stack.pid("processor")
        assert old is not None
        in_flight = fetching()
        os.kill(old, signal.SIGKILL)
        done_at_kill = await terminal_items(stack, batch["id"])
        assert 0 < done_at_kill < len(domains), done_at_kill
        assert in_flight > 0, "the kill must land while fetches are in flight"

        await new_pid(stack, "processor", old)
        final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=90)
        assert final["status"] == "finished", final
        numbers = await check_exactly_once(
            stack, org, batch["id"], requested=len(domains), failed=3
        )
        hooks = await check_webhooks(http, stack, org, receiver, name, batch["id"], len(domains))
        print(
            f"processor SIGKILL: items={len(domains)} done_at_kill={done_at_kill} "
            f"fetches_in_flight={in_flight} {numbers} {hooks}"
        )


async def test_a_broker_restarted_empty_loses_no_item(
    sites: SiteServer, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    # Four batches, so four work records (one per batch: each holds the batch's run of
    # items). The processor works on one item at a time and fetches a record only when
    # the chunks of the one before are nearly done: when the broker dies, every record
    # has been published (the outbox is empty) and the later ones are not consumed yet.
    # The stack resolves the fixture sites it knows when it starts: add them first.
    hosts = [slow_sites(sites, 4, delays=[0.5]) for _ in range(4)]
    async with (
        restartable_broker() as broker,
        private_stack(
            bootstrap_servers=broker.bootstrap_servers,
            sites=sites,
            state_dir=tmp_path / "stack",
            extra={
                "BATCHPLANE_KAFKA_MAX_POLL_RECORDS": "1",
                "BATCHPLANE_PROCESSOR_CHUNK_ITEMS": "1",
                "BATCHPLANE_PROCESSOR_CHUNKS_IN_FLIGHT": "1",
                "BATCHPLANE_REQUEUE_LEASE_S": "6",
                "BATCHPLANE_REQUEUE_INTERVAL_S": "0.5",
                "BATCHPLANE_KAFKA_METADATA_MAX_AGE_MS": "1000",
            },
        ) as stack,
    ):
        orgs = [  # one organisation per batch: the books are checked per batch
            stack.cli(
                "admin", "create-org", "--name", f"b{n}", "--plan", "pro", "--credits", str(CREDITS)
            )
            for n in range(4)
        ]
        batches = []
        for org, batch_hosts in zip(orgs, hosts, strict=True):
            domains = [*batch_hosts, "not a domain"]
            batch = await submit(http, stack, {"domains": domains}, org["token"])
            batches.append((org, batch, len(domains)))
        first = batches[0][1]

        async def started_and_published() -> bool:
            unpublished = await outbox_records(stack)
            return not unpublished and await terminal_items(stack, first["id"]) >= 2

        await until(started_and_published, 60, "the first outcomes")
        broker.kill()
        done_at_kill = [await terminal_items(stack, b["id"]) for _, b, _ in batches]
        await broker.start()
        assert done_at_kill[-1] == 0, done_at_kill  # the last batch's record was unread

        for org, batch, requested in batches:
            final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=90)
            assert final["status"] == "finished", final
            numbers = await check_exactly_once(
                stack, org, batch["id"], requested=requested, failed=1, events_kept=False
            )
            print(f"broker restart: batch {batch['id']} done_at_kill={done_at_kill} {numbers}")


async def test_intake_killed_between_commit_and_publish_loses_no_batch(
    sites: SiteServer, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    # Every client reaches the broker through a proxy (the broker advertises the proxy's
    # port). With the proxy cut, an accepted batch is committed with its outbox records
    # and cannot be published: intake is killed in exactly that state.
    async with (
        restartable_broker() as broker,
        tcp_proxy(broker.port) as proxy,
    ):
        broker.advertised_port = proxy.port
        broker.kill()
        await broker.start()
        async with private_stack(
            bootstrap_servers=broker.bootstrap_servers, sites=sites, state_dir=tmp_path / "stack"
        ) as stack:
            org = stack.cli(
                "admin", "create-org", "--name", "i", "--plan", "pro", "--credits", str(CREDITS)
            )
            domains = ["plain.test", "wp.test", "acme.test", "shop.test", "not a domain"]
            await proxy.cut()
            batch = await submit(http, stack, {"domains": domains}, org["token"])
            queued = await outbox_records(stack)
            work = [r for r in queued if r.topic == stack.env["BATCHPLANE_WORK_TOPIC"]]
            assert len(work) == 1, queued  # one record for the batch's run of items
            old = stack.pid("intake")
            assert old is not None
            os.kill(old, signal.SIGKILL)
            await new_pid(stack, "intake", old)
            # While intake restarts the gateway says so, retryably: 503 `unavailable`.
            answers = await answers_until_back(http, stack, batch["id"], org["token"])
            assert answers - {200} == {(503, "unavailable")}, answers
            await proxy.restore()

            final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=90)
            assert final["status"] == "finished", final
            numbers = await check_exactly_once(
                stack, org, batch["id"], requested=len(domains), failed=1
            )
            assert await outbox_records(stack) == []
            print(
                f"intake SIGKILL before publish: items={len(domains)} "
                f"outbox_at_kill={len(queued)} {numbers}"
            )


async def test_postgres_unreachable_answers_503_and_everything_resumes(
    broker: str, sites: SiteServer, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    admin_port = 5432
    hosts = slow_sites(sites, 8, delays=[1.0])
    async with (
        tcp_proxy(admin_port) as proxy,
        private_stack(
            bootstrap_servers=broker,
            sites=sites,
            state_dir=tmp_path / "stack",
            database_port=proxy.port,
        ) as stack,
    ):
        # The CLI goes through the proxy, which this loop runs: never block the loop.
        org = await asyncio.to_thread(
            stack.cli,
            "admin",
            "create-org",
            "--name",
            "p",
            "--plan",
            "pro",
            "--credits",
            str(CREDITS),
        )
        token = org["token"]
        before = await books(database_url(stack), org["org_id"])
        first = await submit(http, stack, {"domains": hosts}, token)

        async def started() -> bool:
            return await terminal_items(stack, first["id"]) >= 1

        await until(started, 60, "the first batch to start")
        # Requests racing the cut: each is either accepted whole or refused with 503.
        racing = [
            asyncio.create_task(_post_later(http, stack, token, delay=0.02 * i, n=i))
            for i in range(20)
        ]
        await asyncio.sleep(0.15)
        await proxy.cut()
        during = await asyncio.gather(*racing)
        status, _, body = await post_json(
            http, f"{stack.base_url}{LOOKUP}", {"domains": ["plain.test"]}, bearer(token)
        )
        assert (status, body) == (503, {"error": "database unavailable", "code": "unavailable"})
        status, body = await get_json(
            http, f"{stack.base_url}{LOOKUP}/{first['id']}", bearer(token)
        )
        assert status == 503 and body["code"] == "unavailable", (status, body)
        await asyncio.sleep(3)
        await proxy.restore()

        # The services reconnect by themselves: the interrupted batch finishes, and new
        # batches are accepted and finish.
        final = await poll_lookup(http, stack.base_url, first["id"], token, timeout_s=60)
        assert final["status"] == "finished", final
        after_cut = await submit(http, stack, {"domains": ["plain.test", "wp.test"]}, token)
        done = await poll_lookup(http, stack.base_url, after_cut["id"], token, timeout_s=60)
        assert done["status"] == "finished", done

        accepted = [answer for status, answer in during if status == 202]
        refused = [(status, answer) for status, answer in during if status != 202]
        assert all(
            status == 503 and answer["code"] == "unavailable" for status, answer in refused
        ), refused
        for batch in accepted:
            finished = await poll_lookup(http, stack.base_url, batch["id"], token, timeout_s=60)
            assert finished["status"] == "finished", finished
        ledger = await books(database_url(stack), org["org_id"])
        # Exactly the accepted batches exist, each charged once: nothing half-stored.
        assert {b["id"] for b in ledger.batches} == {
            first["id"],
            after_cut["id"],
            *(b["id"] for b in accepted),
        }
        assert all(b["status"] == "finished" for b in ledger.batches), ledger.batches
        charges = await fetch(
            database_url(stack),
            "SELECT batch_id FROM credit_ledger WHERE org_id = $1 AND kind = 'charge'",
            org["org_id"],
        )
        assert sorted(c["batch_id"] for c in charges) == sorted(b["id"] for b in ledger.batches)
        assert ledger.charged == sum(b["requested_count"] for b in ledger.batches)
        assert ledger.ledger_consistent, ledger
        print(
            f"postgres cut: racing={len(during)} accepted={len(accepted)} refused={len(refused)} "
            f"credits {before.balance} -> {ledger.balance} charged={ledger.charged} "
            f"refunded={ledger.refunded} batches={len(ledger.batches)}"
        )


async def _post_later(
    http: aiohttp.ClientSession, stack: RunningStack, token: str, *, delay: float, n: int
) -> tuple[int, Any]:
    await asyncio.sleep(delay)
    status, _, body = await post_json(
        http, f"{stack.base_url}{LOOKUP}", {"domains": ["plain.test", f"bad {n}"]}, bearer(token)
    )
    return status, body
