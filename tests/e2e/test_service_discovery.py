"""Every service answers gRPC health checks and lists its services through reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tests.support.stack import RunningStack

REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
HEALTH = "grpc.health.v1.Health"


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("intake", {"batchplane.api.lookup.v1.BulkLookupService",
                    "batchplane.api.batches.v1.BatchService",
                    "batchplane.api.radars.v1.RadarService"}),
        ("processor", {"batchplane.api.processor.v1.ItemExecutorService"}),
        ("notifier", set()),
    ],
)  # fmt: skip
async def test_each_service_is_healthy_and_reflects_its_services(
    stack: RunningStack, service: str, expected: set[str]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports[service]}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            # The stack is up once the gateway is; the processor may still be starting.
            health_pb2.HealthCheckRequest(service=""),
            timeout=30,
            wait_for_ready=True,
        )
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        answers = [answer async for answer in stream]

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    listed = {s.name for s in answers[0].list_services_response.service}
    assert listed >= expected | {REFLECTION, HEALTH}
