"""Work records stand for runs of consecutive items; the consumer expands them."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from batchplane.api.work.v1 import work_pb2
from batchplane.bus.records import MAX_ITEMS_PER_RECORD, index_runs, work_records
from batchplane.processor.consumer import split_work


def _consumed(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="w",
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=b"1",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def decode(
    records: list[ConsumerRecord[bytes, bytes]],
) -> tuple[list[tuple[int, int]], list[ConsumerRecord[bytes, bytes]]]:
    """Every item key the records stand for, and the poison records, in one chunk."""
    [piece] = split_work(records, max_items=10_000)
    keys = [key for work in piece for key in work.keys or ()]
    return keys, [work.record for work in piece if work.keys is None]


def _runs(records: list[bytes]) -> list[tuple[int, int]]:
    items = [work_pb2.WorkItem.FromString(value) for value in records]
    return [(item.item_index, item.item_count) for item in items]


def test_a_batch_is_one_record_per_run_of_at_most_the_record_size() -> None:
    records = work_records("w", batch_id=7, org_id="org_1", family="lookup", item_count=1_201)
    assert _runs([r.value for r in records]) == [(0, 500), (500, 500), (1_000, 201)]
    assert {r.key for r in records} == {b"7"}  # one partition per batch, as before


def test_chosen_items_become_runs_of_consecutive_indexes() -> None:
    records = work_records(
        "w", batch_id=7, org_id="org_1", family="lookup", item_indexes=[9, 3, 4, 5, 8, 12, 4]
    )
    assert _runs([r.value for r in records]) == [(3, 3), (8, 2), (12, 1)]
    assert index_runs(range(5), 2) == [(0, 2), (2, 2), (4, 1)]


def test_the_consumer_expands_runs_and_reads_single_item_records() -> None:
    run = work_pb2.WorkItem(batch_id=7, item_index=10, item_count=3, family="lookup", org_id="o")
    single = work_pb2.WorkItem(batch_id=8, item_index=4, family="scrape", org_id="o")
    keys, poison = decode(
        [_consumed(run.SerializeToString()), _consumed(single.SerializeToString())]
    )
    assert keys == [(7, 10), (7, 11), (7, 12), (8, 4)]
    assert poison == []


def test_runs_longer_than_a_record_may_hold_are_poison() -> None:
    huge = work_pb2.WorkItem(
        batch_id=7, item_index=0, item_count=MAX_ITEMS_PER_RECORD + 1, family="lookup", org_id="o"
    )
    negative = work_pb2.WorkItem(batch_id=7, item_index=0, item_count=-2, family="lookup")
    records = [_consumed(huge.SerializeToString()), _consumed(negative.SerializeToString())]
    keys, poison = decode(records)
    assert keys == []
    assert poison == records


def test_chunks_hold_at_most_max_items_cutting_runs_where_needed() -> None:
    first = work_pb2.WorkItem(batch_id=1, item_index=0, item_count=5, family="lookup")
    poison = _consumed(b"\xff not protobuf")
    second = work_pb2.WorkItem(batch_id=2, item_index=0, item_count=4, family="lookup")
    pieces = split_work(
        [_consumed(first.SerializeToString()), poison, _consumed(second.SerializeToString())],
        max_items=3,
    )
    assert [[work.keys for work in piece] for piece in pieces] == [
        [[(1, 0), (1, 1), (1, 2)]],
        [[(1, 3), (1, 4)], None, [(2, 0)]],
        [[(2, 1), (2, 2), (2, 3)]],
    ]
    assert pieces[1][1].record is poison
