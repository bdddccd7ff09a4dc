"""Build the Kafka records batchplane publishes: work items and events.

Keys are the batch id as a decimal string, so that every record of one batch
lands on one partition, in order.
"""

from __future__ import annotations

from datetime import datetime

from batchplane.api.events.v1 import events_pb2
from batchplane.api.work.v1 import work_pb2
from batchplane.core.ids import new_id
from batchplane.db.outbox import Record


def batch_key(batch_id: int) -> bytes:
    return str(batch_id).encode()


def work_records(
    topic: str, *, batch_id: int, org_id: str, family: str, item_count: int
) -> list[Record]:
    """One work record per item of a batch."""
    key = batch_key(batch_id)
    return [
        Record(
            topic,
            key,
            work_pb2.WorkItem(
                batch_id=batch_id, item_index=index, family=family, org_id=org_id
            ).SerializeToString(),
        )
        for index in range(item_count)
    ]


EventKind = (
    events_pb2.BatchAccepted
    | events_pb2.BatchStarted
    | events_pb2.ItemCompleted
    | events_pb2.BatchFinished
)

_KIND_FIELD = {
    events_pb2.BatchAccepted: "batch_accepted",
    events_pb2.BatchStarted: "batch_started",
    events_pb2.ItemCompleted: "item_completed",
    events_pb2.BatchFinished: "batch_finished",
}


def event_record(
    topic: str, kind: EventKind, *, org_id: str, batch_id: int, family: str, now: datetime
) -> Record:
    """An `Event` envelope around one kind of event."""
    event = events_pb2.Event(
        event_id=new_id("evt"), org_id=org_id, batch_id=batch_id, family=family
    )
    event.occurred_at.FromDatetime(now)
    getattr(event, _KIND_FIELD[type(kind)]).CopyFrom(kind)
    return Record(topic, batch_key(batch_id), event.SerializeToString())
