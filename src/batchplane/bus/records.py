"""Build the Kafka records batchplane publishes: work items and events.

Keys are the batch id as a decimal string, so that every record of one batch
lands on one partition, in order; a radar's signals are keyed by its radar id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp

from batchplane.api.events.v1 import events_pb2
from batchplane.api.work.v1 import work_pb2
from batchplane.core.ids import new_id, new_ids
from batchplane.db.outbox import Record


def batch_key(batch_id: int) -> bytes:
    return str(batch_id).encode()


# Most items one work record stands for (a bulk of 10,000 scrape URLs is 20 records).
# The processor works on chunks of at most `BATCHPLANE_PROCESSOR_CHUNK_ITEMS` items
# whatever the records hold.
MAX_ITEMS_PER_RECORD = 500


def work_records(
    topic: str,
    *,
    batch_id: int,
    org_id: str,
    family: str,
    item_count: int = 0,
    item_indexes: Iterable[int] | None = None,
) -> list[Record]:
    """The work records for the items of a batch (all of them, or `item_indexes`):
    one per run of consecutive indexes, of at most `MAX_ITEMS_PER_RECORD` items."""
    key = batch_key(batch_id)
    runs = (
        [
            (first, min(MAX_ITEMS_PER_RECORD, item_count - first))
            for first in range(0, item_count, MAX_ITEMS_PER_RECORD)
        ]
        if item_indexes is None
        else index_runs(sorted(set(item_indexes)), MAX_ITEMS_PER_RECORD)
    )
    return [
        Record(
            topic,
            key,
            work_pb2.WorkItem(
                batch_id=batch_id, item_index=start, item_count=count, family=family, org_id=org_id
            ).SerializeToString(),
        )
        for start, count in runs
    ]


def index_runs(indexes: Iterable[int], longest: int) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive ascending indexes, runs cut at `longest`."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and runs[-1][0] + runs[-1][1] == index and runs[-1][1] < longest:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((index, 1))
    return runs


EventKind = (
    events_pb2.BatchAccepted
    | events_pb2.BatchStarted
    | events_pb2.ItemCompleted
    | events_pb2.BatchFinished
    | events_pb2.BatchCancelled
)

_KIND_FIELD = {
    events_pb2.BatchAccepted: "batch_accepted",
    events_pb2.BatchStarted: "batch_started",
    events_pb2.ItemCompleted: "item_completed",
    events_pb2.BatchFinished: "batch_finished",
    events_pb2.BatchCancelled: "batch_cancelled",
}


class BatchEvent(NamedTuple):
    """One kind of event about a batch, before its envelope."""

    kind: EventKind
    org_id: str
    batch_id: int
    family: str


def event_record(
    topic: str, kind: EventKind, *, org_id: str, batch_id: int, family: str, now: datetime
) -> Record:
    """An `Event` envelope around one kind of event."""
    return event_records(topic, [BatchEvent(kind, org_id, batch_id, family)], now=now)[0]


def event_records(topic: str, events: Sequence[BatchEvent], *, now: datetime) -> list[Record]:
    """`Event` envelopes for many events of one moment: one timestamp, and the ids from
    one read of the system's randomness (a chunk's 500 `item_completed` events)."""
    occurred = _timestamp(now)
    records = []
    for event_id, e in zip(new_ids("evt", len(events)), events, strict=True):
        event = _envelope(event_id, e.org_id, e.batch_id, e.family, occurred)
        getattr(event, _KIND_FIELD[type(e.kind)]).CopyFrom(e.kind)
        records.append(Record(topic, batch_key(e.batch_id), event.SerializeToString()))
    return records


def signal_record(
    topic: str, signal: events_pb2.SignalDetected, *, org_id: str, now: datetime
) -> Record:
    """A `signal_detected` event: no batch, keyed by its radar."""
    event = _envelope(new_id("evt"), org_id, 0, "radar", _timestamp(now))
    event.signal_detected.CopyFrom(signal)
    return Record(topic, signal.radar_id.encode(), event.SerializeToString())


def _envelope(
    event_id: str, org_id: str, batch_id: int, family: str, occurred: Timestamp
) -> events_pb2.Event:
    return events_pb2.Event(
        event_id=event_id, org_id=org_id, batch_id=batch_id, family=family, occurred_at=occurred
    )


def _timestamp(moment: datetime) -> Timestamp:
    occurred = Timestamp()
    occurred.FromDatetime(moment)
    return occurred
