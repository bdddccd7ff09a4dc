"""Every webhook POST attempt is a CLIENT span under the span that queued its delivery;
neither the span nor the request carries anything it must not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests.support.tracing import trace_in_memory

from batchplane.api.events.v1 import events_pb2
from batchplane.core import tracing
from batchplane.core.clock import SystemClock
from batchplane.db import webhooks
from batchplane.db.engine import Database
from batchplane.notifier import routing
from batchplane.notifier.delivery import AttemptResult, RetryPolicy, Verdict, WebhookSender
from batchplane.notifier.dispatcher import Dispatcher

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLXRoZS1vcmc="
URL = "https://hooks.example.test/in/abc?token=client-token"


class _Sender:
    def __init__(self, result: AttemptResult) -> None:
        self.result = result
        self.headers: list[Mapping[str, str]] = []

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        self.headers.append(dict(headers))
        return self.result


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    return trace_in_memory(monkeypatch)


def _dispatcher(sender: _Sender) -> Dispatcher:
    return Dispatcher(
        cast(Database, None), cast(WebhookSender, sender), RetryPolicy(), clock=SystemClock()
    )


def _due(attempts: int = 0) -> webhooks.Due:
    return webhooks.Due(
        "msg_evt1", "org_1", URL, b'{"event":"x"}', attempts, {"traceparent": PARENT}
    )


async def test_an_attempt_is_a_client_span_under_its_deliverys_context(
    spans: InMemorySpanExporter,
) -> None:
    sender = _Sender(AttemptResult(Verdict.DELIVERED, 200, 12, "ok", None, None))
    signed = {"webhook-id": "msg_evt1", "webhook-signature": "v1,c2lnbmF0dXJl"}

    result = await _dispatcher(sender)._send(_due(attempts=2), signed)

    assert result is sender.result
    (span,) = spans.get_finished_spans()
    assert (span.name, span.kind) == ("POST", trace.SpanKind.CLIENT)
    assert f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.scheme": "https",
        "server.address": "hooks.example.test",
        "server.port": 443,
        "http.response.status_code": 200,
        "batchplane.webhook.id": "msg_evt1",
        "batchplane.webhook.attempt": 3,
        "batchplane.webhook.verdict": "delivered",
    }
    assert span.status.status_code == StatusCode.UNSET
    # The endpoint gets the signed headers only: no trace context leaves the services.
    assert sender.headers == [signed]


async def test_a_failed_attempt_names_its_stable_error_code(
    spans: InMemorySpanExporter,
) -> None:
    sender = _Sender(
        AttemptResult(Verdict.RETRY, None, 5, "", "connect_failed: refused by 10.0.0.1", None)
    )
    await _dispatcher(sender)._send(_due(), {})
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "connect_failed"
    assert "http.response.status_code" not in attributes
    assert span.status.status_code == StatusCode.ERROR


async def test_an_error_status_is_the_error_type(spans: InMemorySpanExporter) -> None:
    await _dispatcher(_Sender(AttemptResult(Verdict.RETRY, 503, 5, "", None, None)))._send(
        _due(), {}
    )
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {})["error.type"] == "503"


async def test_no_attribute_holds_the_query_the_secret_or_the_body(
    spans: InMemorySpanExporter,
) -> None:
    sender = _Sender(AttemptResult(Verdict.FAILED, 400, 5, "bad", None, None))
    await _dispatcher(sender)._send(_due(), {"webhook-signature": f"v1,{SECRET}"})
    (span,) = spans.get_finished_spans()
    text = repr(dict(span.attributes or {}))
    for secret in ("client-token", "/in/abc", SECRET, '"event"', "v1,"):
        assert secret not in text


def test_deliveries_keep_the_context_they_are_queued_in(spans: InMemorySpanExporter) -> None:
    event = events_pb2.Event(event_id="evt1", batch_id=7, org_id="org_1")
    event.batch_finished.SetInParent()
    batch: Any = SimpleNamespace(id=7, org_id="org_1", params={"webhook_url": URL})
    now = datetime.now(UTC)
    with tracing.tracer().start_as_current_span("process events") as span:
        row = routing._delivery(event, batch, {"event": "batch.completed"}, now)
    context = span.get_span_context()
    assert row["trace_context"]["traceparent"].split("-")[1:3] == [
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    ]


def test_without_tracing_deliveries_keep_no_context() -> None:
    event = events_pb2.Event(event_id="evt1", batch_id=7, org_id="org_1")
    event.batch_finished.SetInParent()
    batch: Any = SimpleNamespace(id=7, org_id="org_1", params={"webhook_url": URL})
    row = routing._delivery(event, batch, {"event": "batch.completed"}, datetime.now(UTC))
    assert row["trace_context"] is None
