"""OpenTelemetry traces of every service, defined in this one module.

One trace follows a batch from the gateway to its webhooks:

* Envoy starts (or continues, from the caller's `traceparent`) a server span and passes
  its context to intake in the `traceparent` header (`gateway/config.py`);
* intake's `ServerTracing` interceptor continues it in a SERVER span per unary call;
* records written to the outbox inside a span carry its W3C context as Kafka headers
  (`traceparent`, `tracestate`), stored in the outbox row and sent by the relay;
* the processor and the notifier group the records of a fetched chunk by trace and
  handle each group in a CONSUMER span whose parent is the records' context; the
  events the processor writes meanwhile carry that span's context on;
* a synchronous framework batch: intake calls the processor's ItemExecutorService in
  a CLIENT span (`calling`) whose context goes in the call's metadata, and the
  processor's `ServerTracing` continues it in a SERVER span;
* the webhook deliveries the notifier queues keep the context of its CONSUMER span
  (column `trace_context`), and every POST attempt is a CLIENT span under it
  (`http_client`).

`BATCHPLANE_OTEL_EXPORTER` chooses where spans go: `none` (the default) installs no
tracer provider, adds no interceptor and writes no headers, so nothing changes;
`console` prints them; `otlp` sends OTLP/HTTP protobuf to `OTEL_EXPORTER_OTLP_ENDPOINT`
(the SDK's own `OTEL_BSP_*` variables tune the batching).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from batchplane.core.errors import BatchplaneError
from batchplane.core.interceptors import Unary, UnaryInterceptor
from batchplane.core.settings import Settings

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None

# The W3C headers a record carries; anything else in a record's headers is not ours.
_TRACE_HEADERS = ("traceparent", "tracestate")

KafkaHeaders = Sequence[tuple[str, bytes]]


def enabled() -> bool:
    """Whether this process traces (`configure` installed a provider)."""
    return _provider is not None


def configure(settings: Settings, service: str) -> None:
    """Install the tracer provider `settings` asks for; `none` installs nothing."""
    global _provider
    exporter = _exporter(settings)
    if exporter is None:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing: %s spans of %s", settings.otel_exporter, service)


def _exporter(settings: Settings) -> SpanExporter | None:
    if settings.otel_exporter == "console":
        return ConsoleSpanExporter()
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint.rstrip('/')}/v1/traces")
    return None


def shutdown() -> None:
    """Export what is buffered and stop (at the end of a service)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


@contextlib.contextmanager
def installed(settings: Settings, service: str) -> Iterator[None]:
    configure(settings, service)
    try:
        yield
    finally:
        shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer("batchplane")


# --- Kafka headers --------------------------------------------------------------------


def current_headers() -> dict[str, str]:
    """The current span's W3C context as record headers; empty when not tracing."""
    if _provider is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in _TRACE_HEADERS}


def trace_key(headers: KafkaHeaders | None) -> str | None:
    """The record's `traceparent` (None without one): records of one trace group by it."""
    for name, value in headers or ():
        if name == "traceparent" and value:
            return value.decode("ascii", "replace")
    return None


def by_trace(records: Sequence[Any]) -> list[list[Any]]:
    """Kafka records grouped by the trace that wrote them (their `traceparent`), in order."""
    groups: dict[str | None, list[Any]] = {}
    for record in records:
        groups.setdefault(trace_key(record.headers), []).append(record)
    return list(groups.values())


def _context_of(headers: KafkaHeaders | None) -> Context:
    carrier = {
        name: value.decode("ascii", "replace")
        for name, value in headers or ()
        if name in _TRACE_HEADERS and value
    }
    return propagate.extract(carrier)


def _stored_context(headers: Mapping[str, str] | None) -> Context:
    """The context of headers kept as text (`current_headers` stored in a row)."""
    carrier = {k: v for k, v in (headers or {}).items() if k in _TRACE_HEADERS and v}
    return propagate.extract(carrier)


@contextlib.contextmanager
def consuming(
    topic: str, headers: KafkaHeaders | None, *, count: int, attributes: Mapping[str, Any]
) -> Iterator[None]:
    """A CONSUMER span for `count` records of `topic`, child of their headers' context."""
    if _provider is None:
        yield
        return
    with tracer().start_as_current_span(
        f"process {topic}",
        context=_context_of(headers),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation": "process",
            "messaging.destination.name": topic,
            "messaging.batch.message_count": count,
            **attributes,
        },
    ):
        yield


# --- gRPC -----------------------------------------------------------------------------


class ServerTracing(UnaryInterceptor):
    """A SERVER span around every unary call, continuing the caller's `traceparent`.

    Install it first (outermost), so the span is current while the servicer runs and
    the records it writes to the outbox carry its context. Streams are not traced.
    """

    def wrap(self, inner: Unary, call: grpc.HandlerCallDetails) -> Unary:
        name = call.method.lstrip("/")
        service, _, method = name.partition("/")
        carrier = {
            key: value
            for key, value in call.invocation_metadata or ()
            if key in _TRACE_HEADERS and isinstance(value, str)
        }

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            with tracer().start_as_current_span(
                name,
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await inner(request, context)
                except BatchplaneError as error:
                    span.set_attribute("batchplane.error_code", error.code)
                    if error.http_status >= 500:
                        span.set_status(Status(StatusCode.ERROR, error.code))
                    raise
                except Exception as error:
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                    raise

        return traced


@contextlib.contextmanager
def calling(method: str) -> Iterator[tuple[tuple[str, str], ...]]:
    """A CLIENT span around one unary call of `method` ("package.Service/Method").

    Yields the call metadata that carries the span's W3C context (empty when not
    tracing): pass it with the call, so the server's `ServerTracing` continues it.
    """
    if _provider is None:
        yield ()
        return
    service, _, name = method.partition("/")
    with tracer().start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield tuple(current_headers().items())
        except grpc.aio.AioRpcError as error:
            code = error.code()
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.set_status(Status(StatusCode.ERROR, code.name))
            raise
        except Exception as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])


# --- HTTP client ----------------------------------------------------------------------


@contextlib.contextmanager
def http_client(
    method: str,
    url: str,
    *,
    parent: Mapping[str, str] | None,
    attributes: Mapping[str, Any],
) -> Iterator[trace.Span]:
    """A CLIENT span for one HTTP request, child of `parent` (stored W3C headers; a
    new trace without them). It names the URL's scheme, host and port only: paths
    and query strings may hold a client's tokens. The caller adds the outcome
    (`http.response.status_code`, `error.type`) to the span it gets; when not
    tracing that span records nothing.
    """
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(
        method,
        context=_stored_context(parent),
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, **_server_of(url), **attributes},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def failed(span: trace.Span, error_type: str) -> None:
    """Mark `span` failed: `error.type` and an error status (a no-op when not tracing)."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))


def _server_of(url: str) -> dict[str, Any]:
    """`url.scheme`, `server.address` and `server.port` of `url` (none if malformed)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return {}
    if not parsed.host:
        return {}
    found: dict[str, Any] = {"url.scheme": parsed.scheme, "server.address": parsed.host}
    if parsed.port is not None:
        found["server.port"] = parsed.port
    return found
