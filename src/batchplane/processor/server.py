"""The processor service: consumes work, runs items, emits events; executes synchronous
batches for intake over gRPC; gRPC health."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchplane.api.processor.v1 import executor_pb2, executor_pb2_grpc
from batchplane.bus.publisher import OutboxPublisher
from batchplane.core import metrics, readiness, tracing
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
from batchplane.processor.handlers.noop import NoopHandler
from batchplane.processor.handlers.pages import PageBudget
from batchplane.processor.handlers.radars import RadarHandler
from batchplane.processor.handlers.scrape import ScrapeHandler
from batchplane.processor.monitor import MonitorSettings, RadarMonitor
from batchplane.processor.pipeline import ItemPipeline
from batchplane.processor.requeue import RequeueSweeper
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


def with_noop_families(
    handlers: list[ItemHandler], noop_families: frozenset[str]
) -> list[ItemHandler]:
    """`handlers`, with those of `noop_families` replaced by no-op ones (benchmarking only)."""
    if not noop_families:
        return handlers
    log.warning(
        "BATCHPLANE_PROCESSOR_NOOP_FAMILIES=%s: items of these families succeed without "
        "any work (a benchmarking aid, never for production)",
        ",".join(sorted(noop_families)),
    )
    return [NoopHandler(h.family) if h.family in noop_families else h for h in handlers]


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
        # Items with a page in hand, at most as many as each fetcher fetches at once (see
        # handlers/pages.py). Scrape pages get their own budget: a scrape may take 300 s
        # and must not hold back lookups.
        pages = PageBudget(self.fetcher.settings.max_concurrency)
        scrape_pages = PageBudget(self.scrape_fetcher.settings.max_concurrency)
        # Compiling the fingerprint database takes about a second: once per process.
        fingerprints = FingerprintDatabase.load()
        lookup = LookupHandler(
            self.database,
            self.fetcher,
            fingerprints,
            clock=clock,
            pages=pages,
            extra_suffixes=settings.lookup.extra_suffixes,
        )
        self.monitor = RadarMonitor(
            self.database,
            lookup,
            self.fetcher,
            MonitorSettings(
                interval_s=settings.radar_check_interval_s,
                events_topic=settings.kafka.events_topic,
                news_feeds=settings.radar_news_feeds,
                job_feeds=settings.radar_job_feeds,
                extra_suffixes=settings.lookup.extra_suffixes,
            ),
            clock=clock,
            on_commit=self.publisher.relay.wake,
        )
        handlers: list[ItemHandler] = [
            lookup,
            EnrichmentHandler(
                self.database,
                self.fetcher,
                fingerprints,
                clock=clock,
                pages=pages,
                freshness_s=settings.enrichment.freshness_s,
            ),
            ScrapeHandler(self.database, self.scrape_fetcher, clock=clock, pages=scrape_pages),
            RadarHandler(
                self.database,
                clock=clock,
                credits_per_radar=settings.radar_credits,
                extra_suffixes=settings.lookup.extra_suffixes,
            ),
        ]
        self.pipeline = ItemPipeline(
            self.database,
            with_noop_families(handlers, settings.processor_noop_families),
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
        self.requeue = RequeueSweeper(
            self.database,
            work_topic=settings.kafka.work_topic,
            lease_s=settings.requeue_lease_s,
            interval_s=settings.requeue_interval_s,
            clock=clock,
            on_commit=self.publisher.relay.wake,
        )
        self._requeue_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self.consumer = WorkConsumer(
            settings.kafka,
            self.pipeline,
            self.publisher.producer,
            self.publisher.connected,
            max_chunks_in_flight=settings.kafka.chunks_in_flight,
            max_items_per_chunk=settings.kafka.chunk_items,
        )
        self.health = health.aio.HealthServicer()
        # Continues intake's CLIENT span of ExecuteItems (sync framework batches).
        self.server = grpc.aio.server(
            interceptors=[tracing.ServerTracing()] if tracing.enabled() else []
        )
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
        reflection.enable_server_reflection(
            (
                executor_pb2.DESCRIPTOR.services_by_name["ItemExecutorService"].full_name,
                health.SERVICE_NAME,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self._consume_task: asyncio.Task[None] | None = None
        self.readiness = readiness.for_service(
            self.health,
            settings,
            self.database,
            services=(executor_pb2.DESCRIPTOR.services_by_name["ItemExecutorService"].full_name,),
        )
        self._readiness_task: asyncio.Task[None] | None = None
        self.metrics = metrics.MetricsServer(
            metrics.registry_for("processor"), refresh=[self.publisher.relay.measure_backlog]
        )
        self.metrics_port: int | None = None

    async def start(self) -> int:
        port = self.server.add_insecure_port(
            f"{self.settings.processor_host}:{self.settings.processor_port}"
        )
        await self.server.start()
        self.metrics_port = await self.metrics.start(
            self.settings.metrics_host, self.settings.processor_metrics_port
        )
        await self.fetcher.start()
        await self.scrape_fetcher.start()
        self.publisher.start()
        self._consume_task = asyncio.create_task(self.consumer.run(), name="work-consumer")
        self._sweep_task = asyncio.create_task(self.sweeper.run(), name="timeout-sweeper")
        self._requeue_task = asyncio.create_task(self.requeue.run(), name="requeue-sweeper")
        self._monitor_task = asyncio.create_task(self.monitor.run(), name="radar-monitor")
        await self.readiness.check()
        self._readiness_task = asyncio.create_task(self.readiness.run(), name="readiness")
        log.info("processor started (health on port %d)", port)
        return int(port)

    async def stop(self) -> None:
        """Finish the chunk in hand, leave the group, flush events."""
        await cancel_and_wait(self._readiness_task)
        await self.health.enter_graceful_shutdown()
        await cancel_and_wait(self._sweep_task)
        await cancel_and_wait(self._requeue_task)
        await cancel_and_wait(self._monitor_task)
        await cancel_and_wait(self._consume_task)
        await self.publisher.stop()
        await self.fetcher.close()
        await self.scrape_fetcher.close()
        await self.server.stop(2)
        await self.metrics.stop()
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
