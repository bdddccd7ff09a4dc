"""Trace context through Kafka headers and the outbox, the gRPC server and client
spans, and the HTTP client span of webhook POSTs."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from tests.support.tracing import trace_in_memory

from batchplane.core import tracing
from batchplane.core.settings import Settings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class _Record:
    headers: list[tuple[str, bytes]]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """This process traces into memory for the test (the global provider is set once)."""
    return trace_in_memory(monkeypatch)


def test_nothing_is_traced_by_default() -> None:
    assert Settings.from_env({}).otel_exporter == "none"
    tracing.configure(Settings.from_env({}), "intake")
    assert not tracing.enabled()
    assert tracing.current_headers() == {}


def test_current_headers_carry_the_current_span(spans: InMemorySpanExporter) -> None:
    with tracing.tracer().start_as_current_span("call") as span:
        headers = tracing.current_headers()
    context = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert set(headers) <= {"traceparent", "tracestate"}


def test_consuming_continues_the_trace_of_the_headers(spans: InMemorySpanExporter) -> None:
    with tracing.consuming(
        "work", [("traceparent", PARENT.encode())], count=2, attributes={"x": 1}
    ):
        inner = tracing.current_headers()
    (span,) = spans.get_finished_spans()
    assert span.name == "process work"
    assert span.kind == trace.SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
    assert span.attributes is not None and span.attributes["messaging.batch.message_count"] == 2
    # Records written inside the span carry it on.
    assert inner["traceparent"].split("-")[1] == PARENT.split("-")[1]


def test_records_group_by_their_trace() -> None:
    other = PARENT.replace("0af7", "1111")
    records = [
        _Record([("traceparent", PARENT.encode())]),
        _Record([]),
        _Record([("traceparent", other.encode()), ("x", b"y")]),
        _Record([("traceparent", PARENT.encode())]),
    ]
    groups = tracing.by_trace(records)
    assert groups == [[records[0], records[3]], [records[1]], [records[2]]]


async def test_server_spans_continue_the_callers_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    import grpc

    seen: dict[str, Any] = {}

    async def handler(request: bytes, context: Any) -> bytes:
        seen.update(tracing.current_headers())
        return request

    async def continuation(_details: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(handler)

    details: Any = SimpleNamespace(
        method="/pkg.Service/Method",
        invocation_metadata=(("traceparent", PARENT), ("other", "x")),
    )
    wrapped = await tracing.ServerTracing().intercept_service(continuation, details)
    assert wrapped is not None and wrapped.unary_unary is not None
    assert await wrapped.unary_unary(b"ok", None) == b"ok"
    (span,) = spans.get_finished_spans()
    assert span.name == "pkg.Service/Method"
    assert span.kind == trace.SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == PARENT.split("-")[1]
    assert seen["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"


def _ids(traceparent: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_a_client_call_is_continued_by_the_server_span(
    spans: InMemorySpanExporter,
) -> None:
    """intake → processor: `calling`'s metadata makes `ServerTracing` continue it."""
    import grpc

    async def handler(request: bytes, context: Any) -> bytes:
        return request

    async def continuation(_details: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(handler)

    with (
        tracing.tracer().start_as_current_span("intake call"),
        tracing.calling("pkg.Executor/Execute") as metadata,
    ):
        details: Any = SimpleNamespace(method="/pkg.Executor/Execute", invocation_metadata=metadata)
        wrapped = await tracing.ServerTracing().intercept_service(continuation, details)
        assert wrapped is not None and wrapped.unary_unary is not None
        assert await wrapped.unary_unary(b"ok", None) == b"ok"
    assert {key for key, _ in metadata} == {"traceparent"}
    server, client, outer = spans.get_finished_spans()
    assert (client.name, client.kind) == ("pkg.Executor/Execute", trace.SpanKind.CLIENT)
    assert client.attributes is not None
    assert client.attributes["rpc.service"] == "pkg.Executor"
    assert client.attributes["rpc.method"] == "Execute"
    assert client.attributes["rpc.grpc.status_code"] == 0
    assert client.parent is not None and client.parent.span_id == outer.context.span_id
    assert server.kind == trace.SpanKind.SERVER
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == outer.context.trace_id


async def test_a_failed_client_call_marks_its_span(spans: InMemorySpanExporter) -> None:
    import grpc

    error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
    )
    with pytest.raises(grpc.aio.AioRpcError), tracing.calling("pkg.Executor/Execute"):
        raise error
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]


def test_without_tracing_calls_carry_no_metadata() -> None:
    assert not tracing.enabled()
    with tracing.calling("pkg.Executor/Execute") as metadata:
        assert metadata == ()
    with tracing.http_client("POST", "https://a.test/x", parent=None, attributes={}) as span:
        span.set_attribute("http.response.status_code", 200)  # records nothing
        assert not span.is_recording()


def test_http_client_spans_continue_stored_context_and_name_the_host_only(
    spans: InMemorySpanExporter,
) -> None:
    url = "https://user:pw@hooks.example.test:8443/in/abc?token=s3cret#frag"
    with tracing.http_client(
        "POST", url, parent={"traceparent": PARENT, "other": "x"}, attributes={"a": 1}
    ) as span:
        tracing.failed(span, "503")
    (finished,) = spans.get_finished_spans()
    assert (finished.name, finished.kind) == ("POST", trace.SpanKind.CLIENT)
    assert (
        f"{finished.context.trace_id:032x}",
        finished.parent and f"{finished.parent.span_id:016x}",
    ) == _ids(PARENT)
    assert dict(finished.attributes or {}) == {
        "http.request.method": "POST",
        "url.scheme": "https",
        "server.address": "hooks.example.test",
        "server.port": 8443,
        "a": 1,
        "error.type": "503",
    }
    assert finished.status.status_code == StatusCode.ERROR


def test_http_client_spans_without_a_stored_context_start_a_trace(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.http_client("POST", "not a url", parent=None, attributes={}):
        pass
    (finished,) = spans.get_finished_spans()
    assert finished.parent is None
    assert dict(finished.attributes or {}) == {"http.request.method": "POST"}
