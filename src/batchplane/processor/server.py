"""The processor service: consumes work, runs items, emits events; executes synchronous
batches for intake over gRPC; gRPC health."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from batchplane.api.processor.v1 import executor_pb2_grpc
from batchplane.bus.publisher import OutboxPublisher
from batchplane.core.clock import Clock, SystemClock
from batchplane.core.runtime import cancel_and_wait
from batchplane.core.settings import Settings
from batchplane.db.engine import Database
from batchplane.lookup.fetch import Fetcher, FetchSettings
from batchplane.lookup.fingerprints import FingerprintDatabase
from batchplane.processor.consumer import WorkConsumer
from batchplane.processor.handlers.base import ItemHandler
from batchplane.processor.handlers.enrichment import EnrichmentHandler
from batchplane.processor.handlers.lookup import LookupHandler
from batchplane.processor.handlers.radars import RadarHandler
from batchplane.processor.handlers.scrape import ScrapeHandler
from batchplane.processor.monitor import RadarMonitor
from batchplane.processor.pipeline import ItemPipeline
from batchplane.processor.sweeper import TimeoutSweeper
from batchplane.processor.sync.executor import ItemExecutor
from batchplane.processor.sync.families import EnrichmentFamily, IntelligenceFamily, SignalsFamily

log = logging.getLogger(__name__)


def fetch_settings(settings: Settings) -> FetchSettings:
    lookup = settings.lookup
    return FetchSettings(
        timeout_s=lookup.fetch_timeout_s,
        max_body_bytes=lookup.fetch_max_body_bytes,
        max_redirects=lookup.fetch_max_redirects,
        allow_networks=settings.outbound_allow_networks,
        https_port=lookup.https_port,
        http_port=lookup.http_port,
        host_overrides=lookup.host_overrides,
        max_concurrency=lookup.fetch_concurrency,
    )


class ProcessorService:
    """Everything the processor runs."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        clock = clock or SystemClock()
        self.database = Database(settings.effective_database_url)
        self.publisher = OutboxPublisher(settings, self.database)
        self.fetcher = Fetcher(fetch_settings(settings))
        # Scrape jobs bound their own time (timeout_per_url, up to 300 s) and read
        # larger pages than lookups do.
        self.scrape_fetcher = Fetcher(
            replace(
                fetch_settings(settings),
                timeout_s=300.0,
                max_body_bytes=settings.scrape_max_body_bytes,
            )
        )
        # Compiling the fingerprint database takes about a second: once per process.
        fingerprints = FingerprintDatabase.load()
        lookup = LookupHandler(
            self.database,
            self.fetcher,
            fingerprints,
            clock=clock,
            extra_suffixes=settings.lookup.extra_suffixes,
        )
        self.monitor = RadarMonitor(
            self.database, lookup, clock=clock, interval_s=settings.radar_check_interval_s
        )
        handlers: list[ItemHandler] = [
            lookup,
            EnrichmentHandler(
                self.database,
                self.fetcher,
                fingerprints,
                clock=clock,
                freshness_s=settings.enrichment.freshness_s,
            ),
            ScrapeHandler(self.database, self.scrape_fetcher, clock=clock),
            RadarHandler(
                self.database,
                clock=clock,
                credits_per_radar=settings.radar_credits,
                extra_suffixes=settings.lookup.extra_suffixes,
            ),
        ]
        self.pipeline = ItemPipeline(
            self.database,
            handlers,
            kafka=settings.kafka,
            clock=clock,
            on_commit=self.publisher.relay.wake,
        )
        self.sweeper = TimeoutSweeper(
            self.database,
            self.pipeline,
            family=EnrichmentHandler.family,
            max_processing_s=settings.enrichment.max_processing_s,
            interval_s=settings.enrichment.sweep_interval_s,
            clock=clock,
        )
        self._sweep_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self.consumer = WorkConsumer(
            settings.kafka,
            self.pipeline,
            self.publisher.producer,
            self.publisher.connected,
            max_chunks_in_flight=settings.kafka.chunks_in_flight,
        )
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        suffixes = settings.lookup.extra_suffixes
        executor_pb2_grpc.add_ItemExecutorServiceServicer_to_server(
            ItemExecutor(
                [
                    IntelligenceFamily(self.database, suffixes),
                    SignalsFamily(self.database, suffixes),
                    EnrichmentFamily(self.database),
                ]
            ),
            self.server,
        )
        self._consume_task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        port = self.server.add_insecure_port(
            f"{self.settings.processor_host}:{self.settings.processor_port}"
        )
        await self.server.start()
        await self.fetcher.start()
        await self.scrape_fetcher.start()
        self.publisher.start()
        self._consume_task = asyncio.create_task(self.consumer.run(), name="work-consumer")
        self._sweep_task = asyncio.create_task(self.sweeper.run(), name="timeout-sweeper")
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="radar-monitor")
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("processor started (health on port %d)", port)
        return int(port)

    async def stop(self) -> None:
        """Finish the chunk in hand, leave the group, flush events."""
        await self.health.enter_graceful_shutdown()
        await cancel_and_wait(self._sweep_task)
        await cancel_and_wait(self._monitor_task)
        await cancel_and_wait(self._consume_task)
        await self.publisher.stop()
        await self.fetcher.close()
        await self.scrape_fetcher.close()
        await self.server.stop(2)
        await self.database.dispose()

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; raises if consuming failed (the process must exit)."""
        assert self._consume_task is not None
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, self._consume_task}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if self._consume_task.done() and not self._consume_task.cancelled():
            self._consume_task.result()  # re-raises the consumer's error


async def run(settings: Settings, stop: asyncio.Event) -> None:
    service = ProcessorService(settings)
    await service.start()
    try:
        await service.wait(stop)
    finally:
        await service.stop()
