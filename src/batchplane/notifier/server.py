"""The notifier service: events topic in, signed webhooks out; gRPC health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from batchplane.bus.kafka import ensure_topics, make_consumer
from batchplane.core.clock import Clock, SystemClock
from batchplane.core.errors import Unavailable
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
        )
        self.health = health.aio.HealthServicer()
        self.server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        port = self.server.add_insecure_port(
            f"{self.settings.notifier_host}:{self.settings.notifier_port}"
        )
        await self.server.start()
        await self.sender.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="events-consumer"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
        ]
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("notifier started (health on port %d)", port)
        return int(port)

    async def _consume(self) -> None:
        kafka = self.settings.kafka
        await retry_forever("creating topics", lambda: ensure_topics(kafka))
        consumer = make_consumer(kafka, kafka.events_topic, group_id=kafka.notifier_group)
        await retry_forever("joining the notifier group", consumer.start)
        try:
            while True:
                chunk = await consumer.getmany(timeout_ms=500)
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
        events = decode_events([r.value for records in chunk.values() for r in records])
        backoff = 0.2
        while True:
            try:
                await self.router.route(events)
                break
            except Unavailable as error:
                log.warning("routing paused: %s; retrying in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        with contextlib.suppress(CommitFailedError):
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in chunk.items()})

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
        await self.database.dispose()


async def run(settings: Settings, stop: asyncio.Event) -> None:
    service = NotifierService(settings)
    await service.start()
    try:
        await service.wait(stop)
    finally:
        await service.stop()
