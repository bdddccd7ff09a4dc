"""Prometheus metrics of every service, defined in this one module, and their endpoint.

Each service serves `GET /metrics` on its own HTTP port
(`BATCHPLANE_{INTAKE,PROCESSOR,NOTIFIER}_METRICS_PORT`), from a registry holding the
metrics below that it moves plus the process and Python collectors. The metric
objects belong to no registry until a service builds its own with `registry_for`,
so importing this module registers nothing. The README's metrics table lists them.

Gauges that describe shared state (the outbox backlog) are measured when Prometheus
scrapes, by the `refresh` hooks a service hands to `MetricsServer`; counters move
where the thing they count happens, after its transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from batchplane.core.errors import BatchplaneError
from batchplane.core.interceptors import Unary, UnaryInterceptor

log = logging.getLogger(__name__)

# --- intake -----------------------------------------------------------------------

REQUESTS = Counter(
    "batchplane_intake_requests",
    "Unary gRPC calls intake answered, by method and outcome ('ok' or the error code).",
    ["grpc_service", "grpc_method", "code"],
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "batchplane_intake_request_duration_seconds",
    "Time intake spent answering one unary gRPC call, errors included.",
    ["grpc_service", "grpc_method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
REJECTIONS = Counter(
    "batchplane_intake_rejections",
    "Calls refused by a rate limit, the monthly quota or the credit balance.",
    ["reason"],
    registry=None,
)
BATCHES_ACCEPTED = Counter(
    "batchplane_batches_accepted",
    "Async batches stored and queued (metered and charged), by family.",
    ["family"],
    registry=None,
)
ITEMS_ACCEPTED = Counter(
    "batchplane_batch_items_accepted",
    "Items of the accepted async batches, by family.",
    ["family"],
    registry=None,
)

# --- intake and processor: the outbox ---------------------------------------------

OUTBOX_BACKLOG = Gauge(
    "batchplane_outbox_backlog",
    "Outbox records committed but not yet published to Kafka (measured at scrape time).",
    registry=None,
)
OUTBOX_PUBLISHED = Counter(
    "batchplane_outbox_published",
    "Outbox records this process published to Kafka.",
    registry=None,
)

# --- processor --------------------------------------------------------------------

ITEMS_RECORDED = Counter(
    "batchplane_items_recorded",
    "Item outcomes the processor recorded (each item once), by family and status.",
    ["family", "status"],
    registry=None,
)

# --- every service --------------------------------------------------------------

DEPENDENCY_UP = Gauge(
    "batchplane_dependency_up",
    "1 when the last readiness probe reached the dependency (database, broker, redis), else 0.",
    ["dependency"],
    registry=None,
)

# --- processor and notifier: consumer groups ---------------------------------------

CONSUMER_LAG = Gauge(
    "batchplane_consumer_lag",
    "Records on the broker past this member's position, per assigned partition.",
    ["group", "topic", "partition"],
    registry=None,
)

# --- notifier ---------------------------------------------------------------------

WEBHOOK_ATTEMPTS = Counter(
    "batchplane_webhook_attempts",
    "Webhook delivery attempts, by verdict (delivered, retry, failed, disable).",
    ["verdict"],
    registry=None,
)
WEBHOOK_SECONDS = Histogram(
    "batchplane_webhook_attempt_duration_seconds",
    "Duration of one webhook POST, by verdict.",
    ["verdict"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
    registry=None,
)
WEBHOOK_DELIVERIES = Counter(
    "batchplane_webhook_deliveries",
    "Webhook deliveries that reached a final state (delivered, failed, disabled, dead).",
    ["status"],
    registry=None,
)

_SERVICE_METRICS: dict[str, tuple[Collector, ...]] = {
    "intake": (
        REQUESTS,
        REQUEST_SECONDS,
        REJECTIONS,
        BATCHES_ACCEPTED,
        ITEMS_ACCEPTED,
        OUTBOX_BACKLOG,
        OUTBOX_PUBLISHED,
        DEPENDENCY_UP,
    ),
    "processor": (
        ITEMS_RECORDED,
        CONSUMER_LAG,
        OUTBOX_BACKLOG,
        OUTBOX_PUBLISHED,
        DEPENDENCY_UP,
    ),
    "notifier": (
        WEBHOOK_ATTEMPTS,
        WEBHOOK_SECONDS,
        WEBHOOK_DELIVERIES,
        CONSUMER_LAG,
        DEPENDENCY_UP,
    ),
}

# Error codes that mean "refused for the caller's limits", and the reason they count as.
_REJECTION_REASONS = {"rate_limited": "rate_limited", "quota_exceeded": "quota_exceeded"}


def registry_for(service: str) -> CollectorRegistry:
    """A new registry with `service`'s metrics and the process and Python collectors."""
    registry = CollectorRegistry()
    for collector in _SERVICE_METRICS[service]:
        registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# --- recording helpers --------------------------------------------------------------


def batch_accepted(family: str, items: int) -> None:
    BATCHES_ACCEPTED.labels(family).inc()
    ITEMS_ACCEPTED.labels(family).inc(items)


def items_recorded(family: str, *, succeeded: int, failed: int) -> None:
    if succeeded:
        ITEMS_RECORDED.labels(family, "succeeded").inc(succeeded)
    if failed:
        ITEMS_RECORDED.labels(family, "failed").inc(failed)


def webhook_attempt(verdict: str, latency_ms: int, final_status: str | None) -> None:
    """One attempt; `final_status` is the delivery's state when the attempt ended it."""
    WEBHOOK_ATTEMPTS.labels(verdict).inc()
    WEBHOOK_SECONDS.labels(verdict).observe(latency_ms / 1000)
    if final_status is not None:
        WEBHOOK_DELIVERIES.labels(final_status).inc()


def rejection_reason(error: BatchplaneError) -> str | None:
    """`rate_limited`, `quota_exceeded` or `insufficient_credits` (any 402), else None."""
    if error.http_status == 402:
        return "insufficient_credits"
    return _REJECTION_REASONS.get(error.code)


class ConsumerLag:
    """Keeps `batchplane_consumer_lag` of one consumer group member up to date.

    `observe` is called from the consuming loop; it reads the consumer's last known
    high-water marks (from fetch responses, no request) and positions, at most once
    per `interval_s`, and drops the series of partitions no longer assigned.
    """

    def __init__(self, group: str, *, interval_s: float = 1.0) -> None:
        self._group = group
        self._interval_s = interval_s
        self._next_at = 0.0
        self._series: set[tuple[str, str]] = set()

    async def observe(self, consumer: Any) -> None:
        if time.monotonic() < self._next_at:
            return
        self._next_at = time.monotonic() + self._interval_s
        current: set[tuple[str, str]] = set()
        for tp in consumer.assignment():
            lag = await _lag(consumer, tp)
            if lag is None:
                continue
            labels = (tp.topic, str(tp.partition))
            CONSUMER_LAG.labels(self._group, *labels).set(lag)
            current.add(labels)
        for gone in self._series - current:
            CONSUMER_LAG.remove(self._group, *gone)
        self._series = current


async def _lag(consumer: Any, tp: Any) -> int | None:
    """high-water - position; None before the first fetch or while rebalancing."""
    try:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return None
        # A fetched partition has a position; never wait for one here.
        position = await asyncio.wait_for(consumer.position(tp), timeout=0.05)
    except (AssertionError, TimeoutError):
        return None
    except Exception as error:  # noqa: BLE001 - e.g. IllegalStateError mid-rebalance
        log.debug("no lag for %s: %s", tp, error)
        return None
    return max(int(highwater) - int(position), 0)


# --- intake's gRPC interceptor --------------------------------------------------------


class RequestMetrics(UnaryInterceptor):
    """Times every unary call and counts it by outcome, and counts limit rejections.

    Install it after `ErrorInterceptor`, so that it wraps the servicer itself and sees
    the domain error before it is turned into a status. Streams are not timed.
    """

    def wrap(self, inner: Unary, call: grpc.HandlerCallDetails) -> Unary:
        service, _, method = call.method.lstrip("/").partition("/")
        seconds = REQUEST_SECONDS.labels(service, method)

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "internal"
            try:
                response = await inner(request, context)
                code = "ok"
                return response
            except BatchplaneError as error:
                code = error.code
                reason = rejection_reason(error)
                if reason is not None:
                    REJECTIONS.labels(reason).inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
                REQUESTS.labels(service, method, code).inc()

        return timed


# --- the /metrics endpoint ------------------------------------------------------------

Refresh = Callable[[], Awaitable[None]]


class MetricsServer:
    """Serves one registry at `GET /metrics` over plain HTTP.

    Before each scrape it runs the `refresh` hooks (each bounded by `refresh_timeout_s`);
    a hook that fails is logged and its gauge keeps its last value.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        refresh: Sequence[Refresh] = (),
        refresh_timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._refresh = tuple(refresh)
        self._refresh_timeout_s = refresh_timeout_s
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int | None) -> int | None:
        """Listen (port 0 picks a free one) and return the port; None: serve nothing."""
        if port is None:
            return None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = int(self._runner.addresses[0][1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        for refresh in self._refresh:
            try:
                await asyncio.wait_for(refresh(), timeout=self._refresh_timeout_s)
            except Exception as error:  # noqa: BLE001 - a stale gauge beats no scrape
                log.warning("metrics refresh failed: %s", error)
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
