"""core/metrics: per-service registries, the /metrics endpoint, intake's request
interceptor (with the real error interceptor in front of it) and consumer lag."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from batchplane.core import metrics
from batchplane.core.errors import InvalidRequest, PaymentRequired, RateLimited
from batchplane.core.settings import Settings, SettingsError
from batchplane.intake.wire_errors import ErrorInterceptor


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_metrics_ports_are_off_unless_set_and_zero_picks_a_free_port() -> None:
    defaults = Settings.from_env({})
    assert defaults.metrics_host == "127.0.0.1"
    assert (
        defaults.intake_metrics_port,
        defaults.processor_metrics_port,
        defaults.notifier_metrics_port,
    ) == (None, None, None)
    env = {
        "BATCHPLANE_METRICS_HOST": "0.0.0.0",
        "BATCHPLANE_INTAKE_METRICS_PORT": "9101",
        "BATCHPLANE_PROCESSOR_METRICS_PORT": "0",
        "BATCHPLANE_NOTIFIER_METRICS_PORT": " ",
    }
    settings = Settings.from_env(env)
    assert settings.metrics_host == "0.0.0.0"
    assert (settings.intake_metrics_port, settings.processor_metrics_port) == (9101, 0)
    assert settings.notifier_metrics_port is None
    with pytest.raises(SettingsError, match="BATCHPLANE_INTAKE_METRICS_PORT"):
        Settings.from_env({"BATCHPLANE_INTAKE_METRICS_PORT": "http"})


def _families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def test_each_service_registry_holds_its_own_metrics_and_none_is_global() -> None:
    names = {
        service: _families(metrics.registry_for(service))
        for service in ("intake", "processor", "notifier")
    }
    assert {
        "batchplane_intake_requests",
        "batchplane_intake_request_duration_seconds",
        "batchplane_intake_rejections",
        "batchplane_batches_accepted",
        "batchplane_outbox_backlog",
    } <= names["intake"]
    assert {
        "batchplane_items_recorded",
        "batchplane_consumer_lag",
        "batchplane_outbox_backlog",
        "batchplane_outbox_published",
    } <= names["processor"]
    assert {
        "batchplane_webhook_attempts",
        "batchplane_webhook_attempt_duration_seconds",
        "batchplane_webhook_deliveries",
        "batchplane_consumer_lag",
    } <= names["notifier"]
    assert "batchplane_webhook_attempts" not in names["intake"]
    assert "batchplane_outbox_backlog" not in names["notifier"]
    assert all("process_cpu_seconds" in n and "python_info" in n for n in names.values())
    # Importing the module registered nothing in the default registry.
    assert not any(name.startswith("batchplane_") for name in _families(REGISTRY))


async def test_the_endpoint_serves_the_registry_after_refreshing_gauges() -> None:
    registry = metrics.registry_for("processor")
    calls: list[str] = []

    async def backlog() -> None:
        calls.append("backlog")
        metrics.OUTBOX_BACKLOG.set(7)

    async def broken() -> None:
        raise RuntimeError("database down")

    server = metrics.MetricsServer(registry, refresh=[broken, backlog])
    assert await metrics.MetricsServer(registry).start("127.0.0.1", None) is None
    port = await server.start("127.0.0.1", 0)
    assert port
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=")
                text = await response.text()
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 404
    finally:
        await server.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert calls == ["backlog"]
    (sample,) = families["batchplane_outbox_backlog"].samples
    assert sample.value == 7
    assert "process_cpu_seconds" in families


# --- the request interceptor, behind intake's real error interceptor ------------------


@dataclass
class Calls:
    raise_next: list[Exception] = field(default_factory=list)


SERVICE = "test.metrics.v1.Echo"


@pytest_asyncio.fixture(loop_scope="session")
async def echo() -> AsyncIterator[tuple[grpc.aio.Channel, Calls]]:
    calls = Calls()

    async def answer(request: bytes, _context: Any) -> bytes:
        if calls.raise_next:
            raise calls.raise_next.pop(0)
        return request

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Say": grpc.unary_unary_rpc_method_handler(answer)}
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor(), metrics.RequestMetrics()])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, calls
    finally:
        await channel.close()
        await server.stop(None)


async def test_calls_are_timed_and_counted_and_limit_rejections_have_a_reason(
    echo: tuple[grpc.aio.Channel, Calls],
) -> None:
    channel, calls = echo
    registry = metrics.registry_for("intake")
    say = channel.unary_unary(f"/{SERVICE}/Say")
    method = {"grpc_service": SERVICE, "grpc_method": "Say"}
    watched = {
        "ok": ("batchplane_intake_requests_total", {**method, "code": "ok"}),
        "limited": ("batchplane_intake_requests_total", {**method, "code": "rate_limited"}),
        "timed": ("batchplane_intake_request_duration_seconds_count", method),
        "rate": ("batchplane_intake_rejections_total", {"reason": "rate_limited"}),
        "quota": ("batchplane_intake_rejections_total", {"reason": "quota_exceeded"}),
        "credits": ("batchplane_intake_rejections_total", {"reason": "insufficient_credits"}),
    }
    before = {key: _value(registry, name, **labels) for key, (name, labels) in watched.items()}

    assert await say(b"hi") == b"hi"
    calls.raise_next = [
        RateLimited("slow down", code="rate_limited"),
        RateLimited("quota", code="quota_exceeded"),
        PaymentRequired("pay", code="insufficient_balance"),
        InvalidRequest("bad"),
    ]
    codes = []
    for _ in range(4):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await say(b"x")
        codes.append(failed.value.code())

    # The error interceptor in front still answers each error with its status.
    assert codes == [
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
    moved = {
        key: _value(registry, name, **labels) - before[key]
        for key, (name, labels) in watched.items()
    }
    assert moved == {"ok": 1, "limited": 1, "timed": 5, "rate": 1, "quota": 1, "credits": 1}


# --- consumer lag -----------------------------------------------------------------------


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    """What `ConsumerLag` reads of an AIOKafkaConsumer."""

    highwaters: dict[TP, int | None]
    positions: dict[TP, int]

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]

    async def position(self, tp: TP) -> int:
        return self.positions[tp]


async def test_consumer_lag_per_partition_and_revoked_partitions_disappear() -> None:
    registry = metrics.registry_for("notifier")
    group = "lag-test-group"
    a, b, c = TP("t", 0), TP("t", 1), TP("t", 2)
    consumer = FakeConsumer({a: 10, b: 5, c: None}, {a: 4, b: 5, c: 0})
    lag = metrics.ConsumerLag(group, interval_s=0)

    await lag.observe(consumer)
    labels = {"group": group, "topic": "t"}
    assert registry.get_sample_value("batchplane_consumer_lag", {**labels, "partition": "0"}) == 6
    assert registry.get_sample_value("batchplane_consumer_lag", {**labels, "partition": "1"}) == 0
    # Not fetched yet: no series rather than a made-up number.
    assert (
        registry.get_sample_value("batchplane_consumer_lag", {**labels, "partition": "2"}) is None
    )

    consumer.highwaters = {a: 12}
    consumer.positions = {a: 12}
    await lag.observe(consumer)
    assert registry.get_sample_value("batchplane_consumer_lag", {**labels, "partition": "0"}) == 0
    assert (
        registry.get_sample_value("batchplane_consumer_lag", {**labels, "partition": "1"}) is None
    )
