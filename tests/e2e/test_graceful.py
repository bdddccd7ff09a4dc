"""SIGTERM, the polite stop, loses nothing in flight: for each service, work under way
when it is told to stop is finished or handed back, and `batchplane run` starts it again.

The services share one stack of their own (they are stopped one after the other)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from tests.e2e.test_faults import (
    CREDITS,
    LOOKUP,
    check_exactly_once,
    check_webhooks,
    healthy_again,
    new_pid,
    slow_sites,
    submit,
    terminal_items,
    until,
)
from tests.support.api import bearer, poll_lookup, post_json
from tests.support.faults import books
from tests.support.receiver import Receiver, serve_receiver
from tests.support.sites import SiteServer
from tests.support.stack import OwnStack, RunningStack


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hosts(sites: SiteServer) -> list[str]:
    """Slow fixture sites, known to the stack's resolver: added before it starts."""
    return slow_sites(sites, 18, delays=[0.5, 1.5, 3.0])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(own_stack: OwnStack, hosts: list[str]) -> AsyncIterator[RunningStack]:
    async with own_stack(
        {"BATCHPLANE_PROCESSOR_CHUNK_ITEMS": "3", "BATCHPLANE_PROCESSOR_CHUNKS_IN_FLIGHT": "2"}
    ) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def new_org(stack: RunningStack) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "g", "--plan", "pro", "--credits", str(CREDITS)
    )


async def test_processor_sigterm_mid_batch_finishes_or_hands_back_its_chunks(
    stack: RunningStack, sites: SiteServer, hosts: list[str], http: aiohttp.ClientSession
) -> None:
    org = new_org(stack)
    batch = await submit(http, stack, {"domains": [*hosts, "not a domain"]}, org["token"])

    def fetching() -> int:
        return sum(sites.in_flight.get(h, 0) for h in hosts)

    async def mid_batch() -> bool:
        return fetching() > 0 and await terminal_items(stack, batch["id"]) >= 3

    await until(mid_batch, 60, "the batch to be under way")
    old = stack.pid("processor")
    assert old is not None
    in_flight = fetching()
    os.kill(old, signal.SIGTERM)
    await new_pid(stack, "processor", old)
    done_at_stop = await terminal_items(stack, batch["id"])

    final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=90)
    assert final["status"] == "finished", final
    numbers = await check_exactly_once(stack, org, batch["id"], requested=len(hosts) + 1, failed=1)
    assert "processor exited with 0; restarting it" in (stack.state_dir / "stack.log").read_text()
    print(f"processor SIGTERM: in_flight={in_flight} done_at_restart={done_at_stop} {numbers}")


async def test_intake_sigterm_answers_every_call_in_flight(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = new_org(stack)
    token = org["token"]

    async def post(n: int) -> tuple[int, Any]:
        await asyncio.sleep(0.01 * n)
        try:
            status, _, body = await post_json(
                http,
                f"{stack.base_url}{LOOKUP}",
                {"domains": ["plain.test", f"bad {n}"]},
                bearer(token),
            )
        except aiohttp.ClientError as error:  # must not happen: the gateway stays up
            return 0, repr(error)
        return status, body

    calls = [asyncio.create_task(post(n)) for n in range(30)]
    await asyncio.sleep(0.1)
    old = stack.pid("intake")
    assert old is not None
    os.kill(old, signal.SIGTERM)
    answers = await asyncio.gather(*calls)
    await new_pid(stack, "intake", old)
    await healthy_again(http, stack)

    accepted = [body for status, body in answers if status == 202]
    refused = [(status, body) for status, body in answers if status != 202]
    # A call intake had taken is answered; one that reached a stopping intake is a
    # retryable 503, never a lost connection or an internal error.
    assert all(s == 503 and b["code"] == "unavailable" for s, b in refused), refused
    assert accepted, answers
    for batch in accepted:
        final = await poll_lookup(http, stack.base_url, batch["id"], token, timeout_s=60)
        assert final["status"] == "finished", final
    ledger = await books(stack.env["DATABASE_URL"], org["org_id"])
    assert sorted(b["id"] for b in ledger.batches) == sorted(b["id"] for b in accepted)
    assert ledger.charged == 2 * len(accepted)
    assert ledger.refunded == len(accepted)  # the "bad n" item of each
    assert ledger.ledger_consistent, ledger
    print(f"intake SIGTERM: calls={len(answers)} accepted={len(accepted)} refused={len(refused)}")


async def test_notifier_sigterm_mid_delivery_loses_no_webhook(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = new_org(stack)
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    name = f"g-{uuid.uuid4().hex[:8]}"
    receiver.delays[name] = 0.7
    domains = ["plain.test", "wp.test", "acme.test", "shop.test", "blog.test", "bad one"]
    batch = await submit(
        http, stack, {"domains": domains, "webhook_url": receiver.url(name)}, org["token"]
    )

    async def some_arrived() -> bool:
        return len(receiver.at(name)) >= 3 and receiver.in_flight[name] > 0

    await until(some_arrived, 60, "the first deliveries")
    old = stack.pid("notifier")
    assert old is not None
    os.kill(old, signal.SIGTERM)
    await new_pid(stack, "notifier", old)
    numbers = await check_webhooks(http, stack, org, receiver, name, batch["id"], len(domains))
    print(f"notifier SIGTERM: {numbers}")
