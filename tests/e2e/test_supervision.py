"""`batchplane run` supervises its services: a killed service is started again with a new
pid while the stack keeps serving, a notifier killed mid-delivery loses no webhook, and a
service that keeps crashing stops the stack with exit code 1.

These tests kill services, so they run on stacks of their own, never the shared one."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import OwnStack, RunningStack

LOOKUP = "/api/v1/bulk/lookup"
# Requests the gateway answers while a service behind it restarts.
_RESTARTING = {502, 503, 504}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def supervised(own_stack: OwnStack) -> AsyncIterator[RunningStack]:
    # A webhook attempt may take 4 s before it counts as timed out, and a killed
    # notifier's claims come back after 6 s.
    async with own_stack(
        {"BATCHPLANE_WEBHOOK_TIMEOUT_S": "4", "BATCHPLANE_WEBHOOK_LEASE_S": "6"}
    ) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)


def _current_pid(stack: RunningStack, service: str) -> int:
    pid = stack.pid(service)
    assert pid is not None, f"no pid file for {service}"
    return pid


async def _new_pid(stack: RunningStack, service: str, old: int, timeout_s: float = 30) -> int:
    await _until(
        lambda: stack.pid(service) not in (None, old), timeout_s, f"{service} to be restarted"
    )
    return _current_pid(stack, service)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _submit(
    http: aiohttp.ClientSession, stack: RunningStack, body: dict[str, Any], token: str
) -> dict[str, Any]:
    """POST a bulk lookup, retrying only while the gateway says a service is restarting."""
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _, answer = await post_json(
                http, f"{stack.base_url}{LOOKUP}", body, bearer(token)
            )
        except aiohttp.ClientError:  # the gateway itself is restarting
            status, answer = 0, None
        if status not in (0, *_RESTARTING) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status == 202, (status, answer)
    return dict(answer)


@pytest.mark.parametrize("service", ["intake", "processor", "gateway"])
async def test_a_killed_service_is_restarted_and_the_stack_keeps_serving(
    supervised: RunningStack, http: aiohttp.ClientSession, service: str
) -> None:
    stack = supervised
    org = stack.cli("admin", "create-org", "--name", "s", "--plan", "pro", "--credits", "10")
    old = _current_pid(stack, service)

    os.kill(old, signal.SIGKILL)
    new = await _new_pid(stack, service, old)

    assert new != old
    assert _alive(new)
    assert not _alive(old)
    assert stack.process.poll() is None, "batchplane run must keep running"
    batch = await _submit(http, stack, {"domains": ["plain.test"]}, org["token"])
    final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=60)
    assert final["status"] == "finished", final
    assert final["error_count"] == 0, final
    assert f"{service} exited with -9; restarting it" in (stack.state_dir / "stack.log").read_text()


async def test_a_notifier_killed_mid_delivery_loses_no_webhook(
    supervised: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    stack = supervised
    org = stack.cli("admin", "create-org", "--name", "k", "--plan", "pro", "--credits", "100")
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    name = f"slow-{uuid.uuid4().hex[:8]}"
    receiver.delays[name] = 0.7  # deliveries stay in flight; 4 at a time per endpoint
    sites = ["plain.test", "shop.test", "blog.test", "acme.test", "api.test", "cards.test"]
    domains = [*sites, "wp.test", "table.test", "not a domain", "-bad-", "x..y", "no spaces ok"]
    expected = {("item_completed", i) for i in range(len(domains))} | {("batch_completed", None)}

    batch = await _submit(
        http, stack, {"domains": domains, "webhook_url": receiver.url(name)}, org["token"]
    )
    # Kill it as the fifth message arrives: one attempt at least has been answered and
    # recorded, this one (and maybe others) is in flight, and others are still queued.
    await _until(lambda: len(receiver.at(name)) >= 5, 60, "the first deliveries")
    notifier = _current_pid(stack, "notifier")
    os.kill(notifier, signal.SIGKILL)
    in_flight_at_kill = receiver.in_flight[name]
    arrived_at_kill = len(receiver.at(name))

    assert in_flight_at_kill >= 1
    assert arrived_at_kill < len(expected)
    await _new_pid(stack, "notifier", notifier)

    def kinds() -> set[tuple[str, int | None]]:
        return {(r.body["event"], r.body.get("item_index")) for r in receiver.at(name)}

    await _until(lambda: kinds() == expected, 90, "every event after the restart")

    got = receiver.at(name)
    assert all(r.verified for r in got)
    ids: dict[tuple[str, int | None], set[str]] = defaultdict(set)
    for message in got:
        ids[(message.body["event"], message.body.get("item_index"))].add(message.webhook_id)
    # Every copy of a message carries its webhook-id, and no two messages share one.
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == len(expected)
    # The deliveries cut off by the kill were sent again.
    assert len(got) > len(expected)
    # The completion still came after every item message, copies included.
    first_completion = next(i for i, r in enumerate(got) if r.body["event"] == "batch_completed")
    assert all(r.body["event"] == "batch_completed" for r in got[first_completion:])
    completion = got[first_completion].body
    assert completion["counts"]["total"] == len(domains)

    # The last answers (the receiver is slow) are recorded a moment after they arrive.
    url = f"{stack.base_url}/api/v1/webhooks/deliveries?batch_id={batch['id']}"
    deadline = time.monotonic() + 30
    while True:
        status, body = await get_json(http, url, bearer(org["token"]))
        assert status == 200, body
        statuses = {d["status"] for d in body["deliveries"]}
        if "pending" not in statuses or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(body["deliveries"]) == len(expected)
    assert statuses == {"delivered"}
    assert {d["id"] for d in body["deliveries"]} == {next(iter(v)) for v in ids.values()}


async def test_a_service_that_keeps_crashing_stops_the_stack_with_exit_code_1(
    own_stack: OwnStack,
) -> None:
    async with own_stack() as stack:
        others = {s: _current_pid(stack, s) for s in ("intake", "processor", "gateway")}
        pid = _current_pid(stack, "notifier")
        for _ in range(4):
            os.kill(pid, signal.SIGKILL)
            pid = await _new_pid(stack, "notifier", pid)
        os.kill(pid, signal.SIGKILL)  # the fifth exit within a minute

        code = await asyncio.to_thread(stack.process.wait, 60)

        assert code == 1
        assert not any(_alive(p) for p in others.values()), others
        assert not (stack.state_dir / "run" / "notifier.pid").exists()
        output = (stack.state_dir / "stack.log").read_text()
        assert "notifier exited 5 times within 60s (last with -9); giving up" in output
