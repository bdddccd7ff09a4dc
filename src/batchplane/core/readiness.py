"""Readiness: gRPC health that follows what a service depends on.

Every service serves `grpc.health.v1`. Being started is not being ready: a service
whose database or broker is unreachable cannot do its work, and its health says so
(NOT_SERVING) until they are back, so that Kubernetes takes the pod out of its
Service and Envoy's `/healthz` turns 503 (Envoy health-checks intake). The process
stays up and reconnects by itself; readiness is not liveness: the health of the
service named `liveness` is SERVING for as long as the process runs (until its
graceful shutdown), whatever the dependencies, for liveness probes to ask.

`Readiness` probes each dependency every `interval_s` (each probe bounded by
`timeout_s`), sets the health of the overall server ("") and of every named gRPC
service, logs each change, and exports `batchplane_dependency_up{dependency}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiokafka.client import AIOKafkaClient
from grpc_health.v1 import health, health_pb2
from sqlalchemy import text

from batchplane.core import metrics
from batchplane.core.settings import KafkaSettings, Settings
from batchplane.db.engine import Database

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]

# The health "service" that only says the process is up (Kubernetes liveness probes).
LIVENESS = "liveness"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def database_probe(database: Database) -> Probe:
    """One `SELECT 1` on a pooled connection (a new one when the pool's went stale)."""

    async def probe() -> None:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return probe


def broker_probe(kafka: KafkaSettings, timeout_s: float) -> Probe:
    """A metadata request to the bootstrap servers, on a connection of its own: the
    service's own clients keep retrying quietly and say nothing about reachability."""

    async def probe() -> None:
        client = AIOKafkaClient(
            bootstrap_servers=kafka.bootstrap_servers,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="batchplane-readiness",
        )
        try:
            await client.bootstrap()
        finally:
            await client.close()

    return probe


class Readiness:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        *,
        services: Sequence[str],
        probes: Mapping[str, Probe],
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._servicer = servicer
        self._services = ("", *services)
        self._probes = dict(probes)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._failing: set[str] | None = None  # None until the first round

    @property
    def failing(self) -> frozenset[str]:
        """The dependencies the last round could not reach."""
        return frozenset(self._failing or ())

    async def run(self) -> None:
        """Probe forever; cancel to stop."""
        while True:
            await self.check()
            await asyncio.sleep(self._interval_s)

    async def check(self) -> bool:
        """One round: probe every dependency, then publish the verdict."""
        names = list(self._probes)
        results = await asyncio.gather(*(self._probe(name) for name in names))
        failing = {name for name, ok in zip(names, results, strict=True) if not ok}
        for name, ok in zip(names, results, strict=True):
            metrics.DEPENDENCY_UP.labels(name).set(1 if ok else 0)
        if self._failing is None:
            await self._servicer.set(LIVENESS, SERVING)
        if failing != self._failing:
            if failing:
                log.warning("not ready: cannot reach %s", ", ".join(sorted(failing)))
            elif self._failing is not None:
                log.info("ready again: every dependency reachable")
            self._failing = failing
            status = NOT_SERVING if failing else SERVING
            for service in self._services:
                await self._servicer.set(service, status)
        return not failing

    async def _probe(self, name: str) -> bool:
        try:
            await asyncio.wait_for(self._probes[name](), self._timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
            log.debug("readiness probe %s failed: %r", name, exc)
            return False
        return True


def for_service(
    servicer: health.aio.HealthServicer,
    settings: Settings,
    database: Database,
    *,
    services: Sequence[str] = (),
    extra: Mapping[str, Probe] | None = None,
) -> Readiness:
    """Readiness on the service's database and broker, plus `extra` probes."""
    return Readiness(
        servicer,
        services=services,
        probes={
            "database": database_probe(database),
            "broker": broker_probe(settings.kafka, settings.health_timeout_s),
            **(extra or {}),
        },
        interval_s=settings.health_interval_s,
        timeout_s=settings.health_timeout_s,
    )
