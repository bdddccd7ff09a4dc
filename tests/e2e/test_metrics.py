"""Prometheus metrics through the whole stack: a bulk lookup with a webhook goes in
through Envoy, and each service's own `/metrics` shows what it did; rejections for
rate limits, the quota and credits are counted with their reason."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from tests.support.api import bearer, poll_lookup, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import RunningStack

LOOKUP = "/api/v1/bulk/lookup"
LOOKUP_SERVICE = "batchplane.api.lookup.v1.BulkLookupService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _submit(
    http: aiohttp.ClientSession, stack: RunningStack, token: str, domains: int
) -> tuple[int, Any]:
    body = {"domains": [f"d{i}.test" for i in range(domains)]}
    status, _, answer = await post_json(http, f"{stack.base_url}{LOOKUP}", body, bearer(token))
    return status, answer


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


async def _scrape(http: aiohttp.ClientSession, stack: RunningStack, service: str) -> Samples:
    port = stack.ports[f"{service}_metrics"]
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200, service
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _series(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {key: value for (n, key), value in samples.items() if n == name and wanted <= key}


async def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert condition()


async def _until_scraped(
    http: aiohttp.ClientSession,
    stack: RunningStack,
    service: str,
    condition: Callable[[Samples], bool],
    timeout_s: float = 15,
) -> Samples:
    """Counters move after commits, gauges after the next poll: scrape until they have."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await _scrape(http, stack, service)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _get(after, name, **labels) - _get(before, name, **labels)


async def test_a_bulk_lookup_moves_the_counters_of_every_service(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = stack.cli("admin", "create-org", "--name", "m", "--plan", "pro", "--credits", "100")
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    before = {s: await _scrape(http, stack, s) for s in ("intake", "processor", "notifier")}
    hook = f"metrics-{uuid.uuid4().hex[:8]}"

    status, _, batch = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["plain.test", "not a domain"], "webhook_url": receiver.url(hook)},
        bearer(org["token"]),
    )
    assert status == 202, batch
    final = await poll_lookup(http, stack.base_url, batch["id"], org["token"])
    assert (final["success_count"], final["error_count"]) == (1, 1)
    await _until(lambda: len(receiver.at(hook)) == 3)

    # intake: the call, its latency, the accepted batch and its items.
    intake = await _scrape(http, stack, "intake")
    method = {"grpc_service": LOOKUP_SERVICE, "grpc_method": "CreateBulkLookup"}
    old = before["intake"]
    assert _moved(old, intake, "batchplane_intake_requests_total", **method, code="ok") == 1
    assert _moved(old, intake, "batchplane_intake_request_duration_seconds_count", **method) == 1
    assert _moved(old, intake, "batchplane_intake_request_duration_seconds_sum", **method) > 0
    assert _moved(old, intake, "batchplane_batches_accepted_total", family="lookup") == 1
    assert _moved(old, intake, "batchplane_batch_items_accepted_total", family="lookup") == 2
    assert _get(intake, "batchplane_outbox_backlog") >= 0
    assert ("batchplane_outbox_backlog", frozenset()) in intake
    assert _get(intake, "process_cpu_seconds_total") > 0

    # processor: one outcome of each status, events published, the group's lag known.
    old = before["processor"]
    processor = await _until_scraped(
        http,
        stack,
        "processor",
        lambda s: bool(
            _series(s, "batchplane_consumer_lag", topic=stack.env["BATCHPLANE_WORK_TOPIC"])
        ),
    )
    recorded = "batchplane_items_recorded_total"
    assert _moved(old, processor, recorded, family="lookup", status="succeeded") >= 1
    assert _moved(old, processor, recorded, family="lookup", status="failed") >= 1
    assert _moved(old, processor, "batchplane_outbox_published_total") >= 3
    lag = _series(
        processor,
        "batchplane_consumer_lag",
        group=stack.env["BATCHPLANE_PROCESSOR_GROUP"],
        topic=stack.env["BATCHPLANE_WORK_TOPIC"],
    )
    assert lag and all(value >= 0 for value in lag.values())

    # notifier: three delivered attempts, timed, and its own group's lag.
    old = before["notifier"]
    notifier = await _until_scraped(
        http,
        stack,
        "notifier",
        lambda s: bool(
            _series(s, "batchplane_consumer_lag", topic=stack.env["BATCHPLANE_EVENTS_TOPIC"])
        ),
    )
    attempts = "batchplane_webhook_attempts_total"
    assert _moved(old, notifier, attempts, verdict="delivered") >= 3
    timed = "batchplane_webhook_attempt_duration_seconds_count"
    assert _moved(old, notifier, timed, verdict="delivered") >= 3
    assert _moved(old, notifier, "batchplane_webhook_deliveries_total", status="delivered") >= 3
    assert _series(
        notifier,
        "batchplane_consumer_lag",
        group=stack.env["BATCHPLANE_NOTIFIER_GROUP"],
        topic=stack.env["BATCHPLANE_EVENTS_TOPIC"],
    )
    # Each service shows its own metrics only.
    assert not _series(intake, "batchplane_webhook_attempts_total")
    assert ("batchplane_outbox_backlog", frozenset()) not in notifier


async def test_rejections_are_counted_by_reason(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    broke = stack.cli("admin", "create-org", "--name", "b", "--plan", "pro", "--credits", "0")
    tiny = stack.cli("admin", "create-org", "--name", "t", "--plan", "tiny", "--credits", "100")
    free = stack.cli("admin", "create-org", "--name", "f", "--plan", "free", "--credits", "100")
    before = await _scrape(http, stack, "intake")

    status, body = await _submit(http, stack, broke["token"], 1)
    assert status == 402, body
    # The tiny plan's monthly quota is 5 units.
    status, body = await _submit(http, stack, tiny["token"], 6)
    assert status == 429 and body["code"] == "quota_exceeded", body
    # The free plan allows 5 bulk submissions a minute; an empty list still takes one.
    statuses = [(await _submit(http, stack, free["token"], 0))[0] for _ in range(6)]
    assert statuses == [422] * 5 + [429]

    after = await _scrape(http, stack, "intake")
    reasons: Mapping[str, float] = {
        reason: _moved(before, after, "batchplane_intake_rejections_total", reason=reason)
        for reason in ("insufficient_credits", "quota_exceeded", "rate_limited")
    }
    assert reasons == {"insufficient_credits": 1, "quota_exceeded": 1, "rate_limited": 1}
    method = {"grpc_service": LOOKUP_SERVICE, "grpc_method": "CreateBulkLookup"}
    requests = "batchplane_intake_requests_total"
    assert _moved(before, after, requests, **method, code="insufficient_credits") == 1
    assert _moved(before, after, requests, **method, code="invalid_request") == 5
    assert _moved(before, after, "batchplane_batches_accepted_total", family="lookup") == 0
