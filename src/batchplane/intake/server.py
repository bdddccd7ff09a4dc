"""The intake service: a grpc.aio server with the public batch APIs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchplane.api.batches.v1 import batches_pb2, batches_pb2_grpc
from batchplane.api.enrichment.v1 import enrichment_pb2_grpc
from batchplane.api.framework.v1 import framework_pb2, framework_pb2_grpc
from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from batchplane.api.processor.v1 import executor_pb2_grpc
from batchplane.api.radars.v1 import radars_pb2_grpc
from batchplane.api.scrape.v1 import scrape_pb2, scrape_pb2_grpc
from batchplane.api.webhooks.v1 import webhooks_pb2, webhooks_pb2_grpc
from batchplane.bus.publisher import OutboxPublisher
from batchplane.core import metrics, readiness, tracing
from batchplane.core.clock import Clock, SystemClock
from batchplane.core.errors import Unavailable
from batchplane.core.runtime import cancel_and_wait
from batchplane.core.settings import Settings
from batchplane.db.engine import Database
from batchplane.intake.auth import Authenticator
from batchplane.intake.batch_control import BatchControl
from batchplane.intake.batches_api import BatchesApi
from batchplane.intake.enrichment_api import (
    SERVICE_NAME as ENRICHMENT_SERVICE,
)
from batchplane.intake.enrichment_api import (
    EnrichmentOperationsApi,
    enrichment_error_body,
)
from batchplane.intake.enrichments import FAMILY as ENRICHMENT_FAMILY
from batchplane.intake.enrichments import EnrichmentBatchHooks, EnrichmentIntake
from batchplane.intake.event_hub import EventHub
from batchplane.intake.framework_api import BatchFrameworkApi
from batchplane.intake.guard import Guard
from batchplane.intake.idempotency import IdempotencyGate
from batchplane.intake.lookup_api import BulkLookupApi
from batchplane.intake.lookups import LookupIntake
from batchplane.intake.radar_bulk import BulkRadarIntake
from batchplane.intake.radars_api import SERVICE_NAME as RADAR_SERVICE
from batchplane.intake.radars_api import RadarsApi, radar_error_body
from batchplane.intake.ratelimit import make_rate_limiter
from batchplane.intake.scrape_api import ScrapeApi
from batchplane.intake.scrapes import ScrapeIntake
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.intake.webhooks_api import WebhooksApi
from batchplane.intake.wire_errors import ErrorInterceptor

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    lookup_pb2.DESCRIPTOR.services_by_name["BulkLookupService"].full_name,
    framework_pb2.DESCRIPTOR.services_by_name["BatchFrameworkService"].full_name,
    ENRICHMENT_SERVICE,
    scrape_pb2.DESCRIPTOR.services_by_name["ScrapeService"].full_name,
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhooksService"].full_name,
    RADAR_SERVICE,
    batches_pb2.DESCRIPTOR.services_by_name["BatchService"].full_name,
)
PURGE_INTERVAL_S = 600


class IntakeService:
    """Everything intake runs: gRPC server, database, outbox publisher."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.database = Database(settings.effective_database_url, verify_commits=True)
        self.publisher = OutboxPublisher(settings, self.database)
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[
                # Outermost: its span is current while the call runs and writes records.
                *([tracing.ServerTracing()] if tracing.enabled() else []),
                ErrorInterceptor(
                    {ENRICHMENT_SERVICE: enrichment_error_body, RADAR_SERVICE: radar_error_body}
                ),
                # Inside the error interceptor: it sees domain errors, not statuses.
                metrics.RequestMetrics(),
            ]
        )
        self.metrics = metrics.MetricsServer(
            metrics.registry_for("intake"), refresh=[self.publisher.relay.measure_backlog]
        )
        self.metrics_port: int | None = None
        self.port = 0
        clock = clock or SystemClock()
        self.limiter = make_rate_limiter(settings.redis_url)
        guard = Guard(Authenticator(self.database), self.limiter, settings.plans)
        self.gate = IdempotencyGate(
            self.database,
            clock=clock,
            ttl=timedelta(seconds=settings.idempotency_ttl_s),
            lease=timedelta(seconds=settings.idempotency_lease_s),
        )
        self.processor_channel = grpc.aio.insecure_channel(settings.processor_address)
        webhook_urls = WebhookUrlPolicy(
            settings.webhooks.allow_http_hosts, settings.outbound_allow_networks
        )
        lookup_intake = LookupIntake(
            self.database,
            lookup=settings.lookup,
            kafka=settings.kafka,
            clock=clock,
            on_commit=self.publisher.relay.wake,
        )
        lookup_pb2_grpc.add_BulkLookupServiceServicer_to_server(
            BulkLookupApi(
                self.database, guard, self.gate, lookup_intake, settings.lookup, webhook_urls
            ),
            self.server,
        )
        framework_pb2_grpc.add_BatchFrameworkServiceServicer_to_server(
            BatchFrameworkApi(
                self.database,
                guard,
                self.gate,
                executor_pb2_grpc.ItemExecutorServiceStub(self.processor_channel),
                clock=clock,
                timeout_s=settings.sync_batch_timeout_s,
            ),
            self.server,
        )
        enrichment_pb2_grpc.add_EnrichmentOperationsServiceServicer_to_server(
            EnrichmentOperationsApi(
                guard,
                self.gate,
                EnrichmentIntake(
                    self.database,
                    settings=settings.enrichment,
                    kafka=settings.kafka,
                    clock=clock,
                    on_commit=self.publisher.relay.wake,
                ),
                extra_suffixes=settings.lookup.extra_suffixes,
                webhook_urls=webhook_urls,
            ),
            self.server,
        )
        scrape_pb2_grpc.add_ScrapeServiceServicer_to_server(
            ScrapeApi(
                self.database,
                guard,
                self.gate,
                ScrapeIntake(
                    self.database,
                    credits_per_url=settings.scrape_credits_per_url,
                    kafka=settings.kafka,
                    clock=clock,
                    on_commit=self.publisher.relay.wake,
                ),
                webhook_urls,
            ),
            self.server,
        )
        webhooks_pb2_grpc.add_WebhooksServiceServicer_to_server(
            WebhooksApi(self.database, guard, clock=clock), self.server
        )
        radars_pb2_grpc.add_RadarServiceServicer_to_server(
            RadarsApi(
                self.database,
                guard,
                clock=clock,
                credits_per_radar=settings.radar_credits,
                extra_suffixes=settings.lookup.extra_suffixes,
                gate=self.gate,
                bulk=BulkRadarIntake(
                    self.database,
                    kafka=settings.kafka,
                    clock=clock,
                    webhook_urls=webhook_urls,
                    on_commit=self.publisher.relay.wake,
                ),
            ),
            self.server,
        )
        self.hub = EventHub(settings.kafka)
        batches_pb2_grpc.add_BatchServiceServicer_to_server(
            BatchesApi(
                self.database,
                guard,
                BatchControl(
                    self.database,
                    kafka=settings.kafka,
                    clock=clock,
                    hooks={ENRICHMENT_FAMILY: EnrichmentBatchHooks()},
                    on_commit=self.publisher.relay.wake,
                ),
                self.hub,
                gate=self.gate,
            ),
            self.server,
        )
        self._hub_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self.readiness = readiness.for_service(
            self.health,
            settings,
            self.database,
            services=SERVICE_NAMES,
            extra={"redis": self.limiter.ping} if settings.redis_url else None,
        )
        self._readiness_task: asyncio.Task[None] | None = None
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    async def start(self) -> int:
        """Bind (port 0 picks a free one), start serving; returns the port."""
        address = f"{self.settings.intake_host}:{self.settings.intake_port}"
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        self.metrics_port = await self.metrics.start(
            self.settings.metrics_host, self.settings.intake_metrics_port
        )
        self.publisher.start()
        self._purge_task = asyncio.create_task(self._purge_idempotency_keys(), name="purge")
        self._hub_task = asyncio.create_task(self.hub.run(), name="event-hub")
        await self.readiness.check()
        self._readiness_task = asyncio.create_task(self.readiness.run(), name="readiness")
        log.info("intake serving on %s:%d", self.settings.intake_host, self.port)
        return self.port

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, finish those in flight, flush the outbox."""
        await cancel_and_wait(self._readiness_task)
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.metrics.stop()
        await cancel_and_wait(self._purge_task)
        await cancel_and_wait(self._hub_task)
        await self.publisher.stop()
        await self.processor_channel.close()
        await self.limiter.aclose()
        await self.database.dispose()

    async def _purge_idempotency_keys(self) -> None:
        """Delete expired idempotency keys now and then (expired ones are free anyway)."""
        while True:
            try:
                purged = await self.gate.purge_expired()
                if purged:
                    log.info("purged %d expired idempotency keys", purged)
            except Unavailable as error:
                log.warning("idempotency purge skipped: %s", error)
            await asyncio.sleep(PURGE_INTERVAL_S)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    service = IntakeService(settings)
    await service.start()
    await stop.wait()
    await service.stop()
