"""The intake service: a grpc.aio server with the public batch APIs."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from batchplane.bus.publisher import OutboxPublisher
from batchplane.core.clock import Clock, SystemClock
from batchplane.core.settings import Settings
from batchplane.db.engine import Database
from batchplane.intake.auth import Authenticator
from batchplane.intake.lookup_api import BulkLookupApi
from batchplane.intake.lookups import LookupIntake
from batchplane.intake.wire_errors import ErrorInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = (lookup_pb2.DESCRIPTOR.services_by_name["BulkLookupService"].full_name,)


class IntakeService:
    """Everything intake runs: gRPC server, database, outbox publisher."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.database = Database(settings.effective_database_url)
        self.publisher = OutboxPublisher(settings, self.database)
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        self.port = 0
        clock = clock or SystemClock()
        authenticator = Authenticator(self.database)
        lookup_intake = LookupIntake(
            self.database,
            lookup=settings.lookup,
            kafka=settings.kafka,
            clock=clock,
            on_commit=self.publisher.relay.wake,
        )
        lookup_pb2_grpc.add_BulkLookupServiceServicer_to_server(
            BulkLookupApi(self.database, authenticator, lookup_intake, settings.lookup),
            self.server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    async def start(self) -> int:
        """Bind (port 0 picks a free one), start serving; returns the port."""
        address = f"{self.settings.intake_host}:{self.settings.intake_port}"
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        self.publisher.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("intake serving on %s:%d", self.settings.intake_host, self.port)
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, finish those in flight, flush the outbox."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.publisher.stop()
        await self.database.dispose()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    service = IntakeService(settings)
    await service.start()
    await stop.wait()
    await service.stop()
