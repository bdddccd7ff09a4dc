"""The notifier service: events topic in, signed webhooks out; gRPC health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from batchplane.api.events.v1 import events_pb2
from batchplane.bus.kafka import TopicKeeper, ensure_topics, make_consumer
from batchplane.core import metrics, readiness, tracing
from batchplane.core.clock import Clock, SystemClock
from batchplane.core.errors import Unavailable
from batchplane.core.metrics import ConsumerLag, MetricsServer
from batchplane.core.runtime import cancel_and_wait, retry_forever
from batchplane.core.settings import Settings
from batchplane.db.engine import Database
from batchplane.notifier.delivery import RetryPolicy, SenderSettings, WebhookSender
from batchplane.notifier.dispatcher import Dispatcher
from batchplane.notifier.routing import EventRouter, decode_events

log = logging.getLogger(__name__)


class NotifierService:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        clock = clock or SystemClock()
        self.database = Database(settings.effective_database_url)
        hooks = settings.webhooks
        self.sender = WebhookSender(
            SenderSettings(
                timeout_s=hooks.timeout_s,
                per_endpoint_concurrency=hooks.per_endpoint_concurrency,
                allow_networks=settings.outbound_allow_networks,
                host_overrides=settings.lookup.host_overrides,
            )
        )
        self.router = EventRouter(self.database, clock=clock)
        self.dispatcher = Dispatcher(
            self.database,
            self.sender,
            RetryPolicy.parse(hooks.retry_schedule),
            clock=clock,
            per_endpoint=hooks.per_endpoint_concurrency,
            max_in_flight=hooks.max_in_flight,
            lease_s=hooks.lease_s,
        )
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.readiness = readiness.for_service(self.health, settings, self.database)
        self.metrics = MetricsServer(metrics.registry_for("notifier"))
        self.metrics_port: int | None = None

    async def start(self) -> int:
        port = self.server.add_insecure_port(
            f"{self.settings.notifier_host}:{self.settings.notifier_port}"
        )
        await self.server.start()
        self.metrics_port = await self.metrics.start(
            self.settings.metrics_host, self.settings.notifier_metrics_port
        )
        await self.sender.start()
        await self.readiness.check()
        self._tasks = [
            asyncio.create_task(self._consume(), name="events-consumer"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self.readiness.run(), name="readiness"),
        ]
        log.info("notifier started (health on port %d)", port)
        return int(port)

    async def _consume(self) -> None:
        kafka = self.settings.kafka
        await retry_forever("creating topics", lambda: ensure_topics(kafka))
        consumer = make_consumer(kafka, kafka.events_topic, group_id=kafka.notifier_group)
        await retry_forever("joining the notifier group", consumer.start)
        lag = ConsumerLag(kafka.notifier_group)
        topics = TopicKeeper(kafka)
        try:
            while True:
                chunk = await consumer.getmany(timeout_ms=500)
                await lag.observe(consumer)
                await topics.check(consumer)
                if chunk:
                    await self._route(consumer, chunk)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _route(
        self,
        consumer: AIOKafkaConsumer,
        chunk: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        records = [r for part in chunk.values() for r in part]
        for group in tracing.by_trace(records) if tracing.enabled() else [records]:
            with tracing.consuming(
                self.settings.kafka.events_topic,
                group[0].headers,
                count=len(group),
                attributes={"batchplane.batch_ids": sorted({_batch_of(r) for r in group})},
            ):
                await self._route_until_done(decode_events([r.value for r in group]))
        with contextlib.suppress(CommitFailedError):
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in chunk.items()})

    async def _route_until_done(self, events: list[events_pb2.Event]) -> None:
        backoff = 0.2
        while True:
            try:
                await self.router.route(events)
                return
            except Unavailable as error:
                log.warning("routing paused: %s; retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def wait(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.result()

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            await cancel_and_wait(task)
        await self.sender.close()
        await self.server.stop(2)
        await self.metrics.stop()
        await self.database.dispose()


def _batch_of(record: ConsumerRecord[Any, Any]) -> str:
    """The record's key: the batch id (a radar's id for signals)."""
    return bytes(record.key or b"").decode("ascii", "replace")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    service = NotifierService(settings)
    await service.start()
    try:
        await service.wait(stop)
    finally:
        await service.stop()
