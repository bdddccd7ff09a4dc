"""The processor's Kafka consumer: work records in, outcomes stored, then offsets committed.

Offsets are committed only after the chunk's outcomes are in the database, so
a crash redelivers work rather than losing it; the pipeline is idempotent on
item identity, so redelivery never double-counts. A record that cannot be
decoded is a poison message: it goes to the dead-letter topic, never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError

from batchplane.api.work.v1 import work_pb2
from batchplane.bus.kafka import TopicKeeper, make_consumer
from batchplane.bus.records import MAX_ITEMS_PER_RECORD
from batchplane.core import tracing
from batchplane.core.errors import Unavailable
from batchplane.core.logs import log_context
from batchplane.core.metrics import ConsumerLag
from batchplane.core.runtime import retry_forever
from batchplane.core.settings import KafkaSettings
from batchplane.db.batches import ItemKey
from batchplane.processor.pipeline import ItemPipeline

log = logging.getLogger(__name__)


def _item_run(record: ConsumerRecord[Any, Any]) -> tuple[int, int, int] | None:
    """(batch id, first item index, item count) of a work record; None for poison."""
    try:
        item = work_pb2.WorkItem.FromString(record.value or b"")
    except DecodeError:
        return None
    count = item.item_count or 1  # 0: a record of one item, as before runs existed
    if item.batch_id <= 0 or item.item_index < 0 or not item.family:
        return None
    if not 0 < count <= MAX_ITEMS_PER_RECORD:
        return None
    return item.batch_id, item.item_index, count


@dataclass
class _Work:
    """A record, and the keys of its items that one chunk works on (None: poison)."""

    record: ConsumerRecord[Any, Any]
    keys: list[ItemKey] | None


def split_work(records: Sequence[ConsumerRecord[Any, Any]], max_items: int) -> list[list[_Work]]:
    """Records as chunks of at most `max_items` item keys, in order; a record's run is
    cut where a chunk fills up, and a poison record rides in the chunk it falls in."""
    pieces: list[list[_Work]] = [[]]
    room = max_items
    for record in records:
        run = _item_run(record)
        if run is None:
            pieces[-1].append(_Work(record, None))
            continue
        batch_id, first, count = run
        while count:
            if room == 0:
                pieces.append([])
                room = max_items
            taken = min(count, room)
            keys = [(batch_id, index) for index in range(first, first + taken)]
            pieces[-1].append(_Work(record, keys))
            first, count, room = first + taken, count - taken, room - taken
    return [piece for piece in pieces if piece]


@dataclass
class _Chunk:
    """Records being worked on, and the offsets to commit once they are stored."""

    task: asyncio.Task[None]
    offsets: dict[TopicPartition, int]


def _stored(chunk: _Chunk) -> bool:
    task = chunk.task
    return task.done() and not task.cancelled() and task.exception() is None


class WorkConsumer:
    """Consumes the work topic in chunks with a consumer group.

    Several chunks are worked on at once (one slow site must not stall the
    others), but offsets are committed strictly in the order the chunks were
    fetched, and only once every earlier chunk is stored too.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        pipeline: ItemPipeline,
        producer: AIOKafkaProducer,
        producer_ready: asyncio.Event,
        *,
        max_chunks_in_flight: int = 8,
        max_items_per_chunk: int = 500,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self._kafka = kafka
        self._pipeline = pipeline
        self._producer = producer
        self._producer_ready = producer_ready
        self._max_in_flight = max_chunks_in_flight
        self._max_items = max_items_per_chunk
        self._slots = asyncio.Semaphore(max_chunks_in_flight)
        self._drain_timeout_s = drain_timeout_s
        self.dead_lettered = 0

    async def run(self) -> None:
        """Consume until cancelled; a chunk that fails unexpectedly ends the run."""
        await self._producer_ready.wait()
        kafka = self._kafka
        consumer = make_consumer(kafka, kafka.work_topic, group_id=kafka.processor_group)
        await retry_forever("joining the processor group", consumer.start)
        lag = ConsumerLag(kafka.processor_group)
        topics = TopicKeeper(kafka)
        chunks: deque[_Chunk] = deque()
        try:
            while True:
                await self._commit_finished(consumer, chunks)
                await topics.check(consumer)
                working = [c.task for c in chunks if not c.task.done()]
                # Bound both the work in progress and what waits behind a slow chunk.
                if len(working) >= self._max_in_flight or len(chunks) >= 4 * self._max_in_flight:
                    await asyncio.wait(working or [chunks[0].task], return_when=FIRST_COMPLETED)
                    continue
                fetched = await consumer.getmany(timeout_ms=50 if chunks else 500)
                await lag.observe(consumer)
                if fetched:
                    chunks.extend(self._start(fetched))
        finally:
            await self._drain(consumer, chunks)

    async def _drain(self, consumer: AIOKafkaConsumer, chunks: deque[_Chunk]) -> None:
        """On the way out: let chunks in hand finish (briefly), commit what is stored."""
        working = [c.task for c in chunks if not c.task.done()]
        if working:
            await asyncio.wait(working, timeout=self._drain_timeout_s)
        stored = deque(itertools.takewhile(_stored, chunks))
        for chunk in chunks:
            chunk.task.cancel()
        await asyncio.gather(*(c.task for c in chunks), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._commit_finished(consumer, stored)
        with contextlib.suppress(Exception):
            await consumer.stop()

    def _start(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> list[_Chunk]:
        """The fetched records as chunks of at most `max_items` items (a record's run of
        items may span chunks), worked on at most `max_chunks_in_flight` at a time. The
        fetch's offsets go with its last chunk: chunks are committed in order."""
        records = [record for partition in fetched.values() for record in partition]
        offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items()}
        pieces = split_work(records, self._max_items)
        return [
            _Chunk(
                asyncio.create_task(self._handle_in_slot(piece)),
                offsets if number == len(pieces) - 1 else {},
            )
            for number, piece in enumerate(pieces)
        ]

    async def _handle_in_slot(self, piece: list[_Work]) -> None:
        async with self._slots:
            await self._handle(piece)

    async def _handle(self, piece: list[_Work]) -> None:
        poison = [work.record for work in piece if work.keys is None]
        if poison:
            await self._dead_letter(poison)
        if not tracing.enabled():
            keys = [key for work in piece for key in work.keys or ()]
            with log_context(batch_ids=sorted({batch_id for batch_id, _ in keys})):
                await self._process_until_done(keys)
            return
        # One span per trace in the chunk (usually one: a batch's records share one).
        groups: dict[str | None, list[_Work]] = {}
        for work in piece:
            if work.keys is not None:
                groups.setdefault(tracing.trace_key(work.record.headers), []).append(work)
        await asyncio.gather(*(self._process_traced(group) for group in groups.values()))

    async def _process_traced(self, group: list[_Work]) -> None:
        keys = [key for work in group for key in work.keys or ()]
        batch_ids = sorted({batch_id for batch_id, _ in keys})
        with (
            tracing.consuming(
                self._kafka.work_topic,
                group[0].record.headers,
                count=len(group),
                attributes={"batchplane.batch_ids": batch_ids},
            ),
            log_context(batch_ids=batch_ids),
        ):
            await self._process_until_done(keys)

    async def _commit_finished(self, consumer: AIOKafkaConsumer, chunks: deque[_Chunk]) -> None:
        offsets: dict[TopicPartition, int] = {}
        while chunks and chunks[0].task.done():
            chunk = chunks.popleft()
            chunk.task.result()  # an unexpected error ends the run; the work is redelivered
            offsets.update(chunk.offsets)
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced: another member owns these partitions now
            # and will redeliver; the pipeline ignores items already done.
            log.warning("offset commit failed after a rebalance; work will be redelivered")

    async def _process_until_done(self, keys: list[ItemKey]) -> None:
        backoff = 0.2
        while True:
            try:
                await self._pipeline.process(keys)
                return
            except Unavailable as exc:
                log.warning("processing paused: %s; retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _dead_letter(self, records: list[Any]) -> None:
        sends = [
            await self._producer.send(
                self._kafka.dead_letter_topic,
                record.value,
                key=record.key,
                headers=[
                    ("x-source-topic", record.topic.encode()),
                    ("x-source-partition", str(record.partition).encode()),
                    ("x-source-offset", str(record.offset).encode()),
                    ("x-reason", b"undecodable work item"),
                ],
            )
            for record in records
        ]
        try:
            await asyncio.gather(*sends)
        except KafkaError:
            log.exception("could not dead-letter %d poison records", len(records))
            raise
        self.dead_lettered += len(records)
        log.warning("dead-lettered %d poison records", len(records))
