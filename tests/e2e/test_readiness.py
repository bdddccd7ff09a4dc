"""Readiness follows the database and the broker, on the real stack.

The services reach PostgreSQL and the broker through TCP proxies the test cuts. While
one is unreachable, every service that needs it answers NOT_SERVING to
`grpc.health.v1` (and the gateway's `/healthz`, which follows intake's health, answers
503); once it is back they are SERVING again by themselves, without a restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.support.faults import private_stack, restartable_broker
from tests.support.proxies import tcp_proxy
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

SERVICES = ("intake", "processor", "notifier")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LOOKUP_SERVICE = "batchplane.api.lookup.v1.BulkLookupService"


async def health_of(stack: RunningStack, service: str, name: str = "") -> int | str:
    """The service's health status, or the gRPC error code if it did not answer."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports[service]}") as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=5
            )
        except grpc.aio.AioRpcError as error:
            return str(error.code())
        return int(answer.status)


async def healthz(http: aiohttp.ClientSession, stack: RunningStack) -> int:
    async with http.get(f"{stack.base_url}/healthz") as response:
        return response.status


async def until_all(stack: RunningStack, http: aiohttp.ClientSession, status: int) -> None:
    """Until every service reports `status` (intake also for a named service) and the
    gateway's /healthz agrees."""
    expected_healthz = 200 if status == SERVING else 503
    deadline = time.monotonic() + 30
    seen: dict[str, int | str] = {}
    while time.monotonic() < deadline:
        seen = {service: await health_of(stack, service) for service in SERVICES}
        seen["intake/lookup"] = await health_of(stack, "intake", LOOKUP_SERVICE)
        gateway = await healthz(http, stack)
        if set(seen.values()) == {status} and gateway == expected_healthz:
            return
        seen["/healthz"] = gateway
        await asyncio.sleep(0.2)
    logs = {service: stack.log(service)[-3000:] for service in SERVICES}
    raise AssertionError(f"health never became {status}: {seen}\n{logs}")


async def test_health_follows_the_database_and_the_broker(
    sites: SiteServer, http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    async with (
        restartable_broker() as broker,
        tcp_proxy(broker.port) as broker_path,
        tcp_proxy(5432) as database_path,
    ):
        broker.advertised_port = broker_path.port
        broker.kill()
        await broker.start()
        async with private_stack(
            bootstrap_servers=broker.bootstrap_servers,
            sites=sites,
            state_dir=tmp_path / "stack",
            database_port=database_path.port,
            extra={"BATCHPLANE_HEALTH_INTERVAL_S": "0.3", "BATCHPLANE_HEALTH_TIMEOUT_S": "1"},
        ) as stack:
            await until_all(stack, http, SERVING)
            pids = {service: stack.pid(service) for service in SERVICES}

            await database_path.cut()
            await until_all(stack, http, NOT_SERVING)
            # Not ready is not dead: liveness probes must not restart the pods.
            for service in SERVICES:
                assert await health_of(stack, service, "liveness") == SERVING, service
            await database_path.restore()
            await until_all(stack, http, SERVING)

            await broker_path.cut()
            await until_all(stack, http, NOT_SERVING)
            await broker_path.restore()
            await until_all(stack, http, SERVING)

            # Nothing crashed on the way: the same processes recovered by themselves.
            assert {service: stack.pid(service) for service in SERVICES} == pids
            # Each transition was logged once, naming what could not be reached.
            for service in SERVICES:
                log = stack.log(service)
                assert "not ready: cannot reach database" in log, service
                assert "not ready: cannot reach broker" in log, service
                assert log.count("ready again") == 2, service
