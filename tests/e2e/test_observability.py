"""Logs and traces of the whole stack, through Envoy, with the callers' `traceparent`:

* a bulk lookup with a webhook: Envoy, intake, the processor and the notifier export
  spans of that one trace (through Kafka headers), down to each webhook POST;
* a synchronous framework batch: Envoy, intake's server span, its client span of the
  call to the processor's ItemExecutorService and the processor's server span;

no span attribute holds the caller's token or the org's webhook secret, and every
service logs JSON lines that never contain them either."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, poll_lookup, post_json
from tests.support.otlp import Collector, Span, serve_collector
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import OwnStack, RunningStack

SERVICES = ("intake", "processor", "notifier")
SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP SpanKind values
INTELLIGENCE_BATCH = "batchplane.api.framework.v1.BatchFrameworkService/IntelligenceBatch"
EXECUTE_ITEMS = "batchplane.api.processor.v1.ItemExecutorService/ExecuteItems"


@dataclass
class Traced:
    """The stack exporting its spans to `collector`, and an org that has a secret."""

    stack: RunningStack
    collector: Collector
    receiver: Receiver
    token: str
    secret: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced(own_stack: OwnStack) -> AsyncIterator[Traced]:
    async with serve_collector() as collector, serve_receiver() as receiver:
        env = {
            "BATCHPLANE_LOG_FORMAT": "json",
            "BATCHPLANE_LOG_LEVEL": "DEBUG",
            "BATCHPLANE_OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        async with own_stack(env) as stack:
            org = stack.cli("admin", "create-org", "--name", "o", "--plan", "pro", "--credits", "9")
            secret = stack.cli("admin", "webhook-secret", org["org_id"])["secret"]
            receiver.secrets.append(secret)
            yield Traced(stack, collector, receiver, org["token"], secret)
        # After the stack stopped, every log is complete: checked at the module's end.
        _check_logs(stack, org["token"], secret)


async def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert condition()


def _by_service(spans: list[Span]) -> dict[str, list[Span]]:
    grouped: dict[str, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.service, []).append(span)
    return grouped


def _traceparent() -> tuple[str, str, str]:
    """A caller's `traceparent`, with its trace id and span id."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _check_logs(stack: RunningStack, *secrets: str) -> None:
    """Every service's log is JSON lines; no log of the stack holds a secret."""
    for service in SERVICES:
        lines = [line for line in stack.log(service).splitlines() if line.strip()]
        assert lines, service
        for line in lines:
            entry = json.loads(line)
            assert {"ts", "level", "logger", "message", "service"} <= entry.keys(), line
            assert entry["service"] == service
    for path in [*stack.state_dir.glob("logs/*.log"), stack.state_dir / "stack.log"]:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, path.name


def _check_no_secrets(spans: list[Span], *secrets: str) -> None:
    """No attribute of any span (of any service, Envoy's too) holds a secret."""
    assert spans
    for span in spans:
        text = json.dumps(span.attributes, default=repr)
        for secret in secrets:
            assert secret not in text, (span.service, span.name)


def _gateway_and_intake(services: dict[str, list[Span]], caller: str, method: str) -> Span:
    """Envoy continues the caller's span; intake's SERVER span of `method` Envoy's."""
    (gateway,) = services["batchplane-gateway"]
    assert gateway.parent_span_id == caller
    (intake,) = [s for s in services["batchplane-intake"] if s.name.endswith(method)]
    assert intake.kind == SERVER
    assert intake.parent_span_id == gateway.span_id
    return intake


async def test_one_trace_from_the_gateway_to_the_webhook(
    traced: Traced, http: aiohttp.ClientSession
) -> None:
    stack, collector, receiver = traced.stack, traced.collector, traced.receiver
    traceparent, trace_id, caller_span = _traceparent()
    hook = f"traced-{uuid.uuid4().hex[:8]}"
    status, _, batch = await post_json(
        http,
        f"{stack.base_url}/api/v1/bulk/lookup",
        {"domains": ["plain.test", "not a domain"], "webhook_url": receiver.url(hook)},
        {**bearer(traced.token), "traceparent": traceparent},
    )
    assert status == 202, batch
    final = await poll_lookup(http, stack.base_url, batch["id"], traced.token)
    assert (final["success_count"], final["error_count"]) == (1, 1)
    await _until(lambda: len(receiver.at(hook)) == 3)
    assert all(r.verified for r in receiver.at(hook))

    def complete() -> bool:
        services = _by_service(collector.of_trace(trace_id))
        posts = [s for s in services.get("batchplane-notifier", []) if s.kind == CLIENT]
        return len(posts) == 3 and all(
            f"batchplane-{s}" in services for s in (*SERVICES, "gateway")
        )

    await _until(complete, timeout_s=30)
    spans = collector.of_trace(trace_id)
    services = _by_service(spans)
    by_id = {span.span_id: span for span in spans}
    intake = _gateway_and_intake(services, caller_span, "/CreateBulkLookup")
    # The processor's span continues intake's, through the work records' headers.
    processor = services["batchplane-processor"]
    assert processor and all(s.kind == CONSUMER for s in processor)
    assert all(s.name.startswith("process test.work.") for s in processor)
    assert {by_id[s.parent_span_id].service for s in processor} == {"batchplane-intake"}
    assert intake.span_id in {s.parent_span_id for s in processor}
    # The notifier's continue the processor's, through the events' headers.
    notifier = services["batchplane-notifier"]
    consumers = [s for s in notifier if s.kind == CONSUMER]
    assert consumers and all(s.name.startswith("process test.events.") for s in consumers)
    assert {by_id[s.parent_span_id].service for s in consumers if s.parent_span_id in by_id} <= {
        "batchplane-processor",
        "batchplane-intake",
    }
    assert any(by_id.get(s.parent_span_id, s).service == "batchplane-processor" for s in consumers)
    # Each webhook POST is a CLIENT span under the notifier's span that queued it.
    posts = [s for s in notifier if s.kind == CLIENT]
    assert {s.kind for s in notifier} == {CONSUMER, CLIENT}
    assert all(by_id[s.parent_span_id] in consumers for s in posts)
    # ...so the POST of an item the processor completed descends from its span.
    assert any(
        by_id[by_id[s.parent_span_id].parent_span_id].service == "batchplane-processor"
        for s in posts
        if by_id[s.parent_span_id].parent_span_id in by_id
    )
    assert {s.attributes["batchplane.webhook.id"] for s in posts} == {
        r.webhook_id for r in receiver.at(hook)
    }
    for post in posts:
        assert post.name == "POST"
        assert post.attributes["http.request.method"] == "POST"
        assert post.attributes["server.address"] == "127.0.0.1"
        assert post.attributes["server.port"] == receiver.port
        assert post.attributes["http.response.status_code"] == 200
        assert post.attributes["batchplane.webhook.attempt"] == 1
        assert not any(hook in str(value) for value in post.attributes.values())
    _check_no_secrets(collector.spans, traced.token, traced.secret)


async def test_a_sync_batch_traces_intake_calling_the_processor(
    traced: Traced, http: aiohttp.ClientSession
) -> None:
    stack, collector = traced.stack, traced.collector
    traceparent, trace_id, caller_span = _traceparent()
    status, _, answer = await post_json(
        http,
        f"{stack.base_url}/api/v1/intelligence/batch",
        {"requests": [{"domain": "never-looked-up.test"}, {"nope": 1}]},
        {**bearer(traced.token), "traceparent": traceparent},
    )
    assert status == 207, answer
    assert [item["status"] for item in answer["data"]] == [404, 400]

    def complete() -> bool:
        services = _by_service(collector.of_trace(trace_id))
        return all(f"batchplane-{s}" in services for s in ("gateway", "intake", "processor"))

    await _until(complete, timeout_s=30)
    spans = collector.of_trace(trace_id)
    services = _by_service(spans)
    assert "batchplane-notifier" not in services  # no Kafka, no webhook
    intake = _gateway_and_intake(services, caller_span, "/IntelligenceBatch")
    assert intake.name == INTELLIGENCE_BATCH
    # intake's CLIENT span of the call, under its SERVER span...
    (client,) = [s for s in services["batchplane-intake"] if s.kind == CLIENT]
    assert client.name == EXECUTE_ITEMS
    assert client.parent_span_id == intake.span_id
    assert client.attributes["rpc.system"] == "grpc"
    assert client.attributes["rpc.grpc.status_code"] == 0
    # ...continued by the processor's SERVER span, through the call's metadata.
    (executor,) = services["batchplane-processor"]
    assert (executor.name, executor.kind) == (EXECUTE_ITEMS, SERVER)
    assert executor.parent_span_id == client.span_id
    assert len(spans) == 4  # Envoy, intake's two, the processor's
    _check_no_secrets(collector.spans, traced.token, traced.secret)
