"""Batches and their items (owner of batches and batch_items).

Item identity is (batch_id, item_index). Outcomes are recorded only for items
still queued, under a row lock, so a redelivered item is never counted twice.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.expression import Grouping

from batchplane.core.states import BatchState, ItemState
from batchplane.db.dialect import is_postgresql, supports_skip_locked
from batchplane.db.keysets import pair_runs, pairs_in
from batchplane.db.models import Batch, BatchItem, table

ItemKey = tuple[int, int]


@dataclass(frozen=True)
class PendingItem:
    """An item that still needs work, with what its handler needs."""

    batch_id: int
    item_index: int
    org_id: str
    family: str
    input: str
    params: dict[str, Any]

    @property
    def key(self) -> ItemKey:
        return (self.batch_id, self.item_index)


@dataclass(frozen=True)
class Outcome:
    """The terminal result of one item, produced by a family handler."""

    batch_id: int
    item_index: int
    succeeded: bool
    error_code: str | None = None
    result: dict[str, Any] | None = None

    @property
    def key(self) -> ItemKey:
        return (self.batch_id, self.item_index)


@dataclass(frozen=True)
class BatchProgressUpdate:
    """A batch touched by recorded outcomes, after the update."""

    batch_id: int
    org_id: str
    family: str
    requested: int
    processed: int
    succeeded: int
    failed: int
    refund: int
    credits_refunded: int
    finished: bool
    cancelled: int = 0
    # The batch's status after the update.
    status: str = BatchState.PROCESSING


async def create_batch(
    session: AsyncSession,
    *,
    org_id: str,
    family: str,
    inputs: Sequence[str],
    params: dict[str, Any],
    created_by: str,
    credits_charged: int,
    now: datetime,
    retry_of: int | None = None,
) -> Batch:
    """Store a queued batch and its items; returns the batch with its id."""
    batch = Batch(
        org_id=org_id,
        family=family,
        status=BatchState.QUEUED,
        requested_count=len(inputs),
        processed_count=0,
        success_count=0,
        error_count=0,
        cancelled_count=0,
        credits_charged=credits_charged,
        credits_refunded=0,
        params=params,
        created_by=created_by,
        created_at=now,
        retry_of=retry_of,
    )
    session.add(batch)
    await session.flush()
    if is_postgresql(session):
        # PostgreSQL: one array parameter for the whole batch; a multi-row VALUES
        # binds four parameters per item, and SQLAlchemy's per-parameter work was the
        # larger part of intake's CPU for a 100-item batch.
        await session.execute(_insert_items_from_array(), {"batch_id": batch.id, "inputs": inputs})
    else:
        await session.execute(
            insert(BatchItem),
            [
                {"batch_id": batch.id, "item_index": i, "input": value, "status": ItemState.QUEUED}
                for i, value in enumerate(inputs)
            ],
        )
    return batch


def _insert_items_from_array() -> Any:
    """INSERT the queued items of `:batch_id` from the `:inputs` array, indexed from 0."""
    inputs = (
        func.unnest(bindparam("inputs", type_=ARRAY(Text)))
        .table_valued("input", with_ordinality="position")
        .render_derived()
    )
    rows = select(
        bindparam("batch_id", type_=Integer),
        (inputs.c.position - 1).label("item_index"),
        inputs.c.input,
        literal(ItemState.QUEUED, String),
    )
    columns = ["batch_id", "item_index", "input", "status"]
    return insert(table(BatchItem)).from_select(columns, rows)


async def get_batch(session: AsyncSession, *, batch_id: int, org_id: str) -> Batch | None:
    """The organisation's batch, or None (also for another organisation's batch)."""
    batch = await session.get(Batch, batch_id)
    return batch if batch is not None and batch.org_id == org_id else None


async def list_items(session: AsyncSession, *, batch_id: int) -> list[BatchItem]:
    stmt = select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.item_index)
    return list((await session.execute(stmt)).scalars())


def _item_keys_in(keys: Sequence[ItemKey]) -> Any:
    """`(batch_id, item_index) IN keys`, written as a few index ranges (a chunk names
    hundreds of items, mostly consecutive ones of a batch): see `keysets`."""
    items = table(BatchItem)
    return pairs_in((items.c.batch_id, items.c.item_index), keys)


def _pending_items_query() -> Any:
    return (
        select(BatchItem.batch_id, BatchItem.item_index, BatchItem.input)
        .add_columns(Batch.org_id, Batch.family, Batch.params)
        .join(Batch, Batch.id == BatchItem.batch_id)
        .where(BatchItem.status == ItemState.QUEUED)
    )


async def _pending_items(session: AsyncSession, stmt: Any) -> list[PendingItem]:
    return [
        PendingItem(
            batch_id=row.batch_id,
            item_index=row.item_index,
            org_id=row.org_id,
            family=row.family,
            input=row.input,
            params=row.params or {},
        )
        for row in await session.execute(stmt)
    ]


@dataclass(frozen=True)
class Claim:
    """What a claim took: the items to work on, and the batches it started."""

    items: list[PendingItem]
    # Batches moved from queued to processing by this claim: (id, org_id, family).
    started: list[tuple[int, str, str]]


async def claim_pending(
    session: AsyncSession,
    *,
    keys: Iterable[ItemKey],
    now: datetime,
    deferred_families: frozenset[str] = frozenset(),
) -> Claim:
    """The items among `keys` still queued, claimed so that a cancel spares them; their
    batches still queued move to processing.

    Locks the batches' rows first (PostgreSQL) and reads each batch once, not once per
    item. Items of `deferred_families` are returned unclaimed: their handler claims each
    one when its work starts (`mark_items_started`). Under row locks (PostgreSQL) or the
    database lock (SQLite), an item is either claimed or cancelled, never both.
    """
    key_list = list(dict.fromkeys(keys))  # a redelivery can name an item twice
    locked = await _lock_batches(session, {batch_id for batch_id, _ in key_list})
    to_claim: list[ItemKey] = []
    to_read: list[ItemKey] = []
    for key in key_list:
        if key[0] in locked:
            deferred = locked[key[0]].family in deferred_families
            (to_read if deferred else to_claim).append(key)
    inputs = await _claim(session, to_claim, now)
    if to_read:
        inputs.update(await _queued_inputs(session, to_read))
    items = []
    for batch_id, index in key_list:
        value = inputs.get((batch_id, index))
        if value is not None:
            batch = locked[batch_id]
            items.append(
                PendingItem(batch_id, index, batch.org_id, batch.family, value, batch.params)
            )
    queued = sorted({i.batch_id for i in items if locked[i.batch_id].status == BatchState.QUEUED})
    return Claim(items, await _start(session, queued, now))


async def _claim(session: AsyncSession, keys: list[ItemKey], now: datetime) -> dict[ItemKey, str]:
    """Mark queued items claimed (a redelivered item keeps its first claim); returns the
    input of each item claimed, in the same statement."""
    if not keys:
        return {}
    items = table(BatchItem)
    rows = await session.execute(
        update(items)
        .where(_item_keys_in(keys), items.c.status == ItemState.QUEUED)
        .values(claimed_at=func.coalesce(items.c.claimed_at, now))
        .returning(items.c.batch_id, items.c.item_index, items.c.input)
    )
    return {(batch_id, index): value for batch_id, index, value in rows}


async def _queued_inputs(session: AsyncSession, keys: list[ItemKey]) -> dict[ItemKey, str]:
    """The input of each item among `keys` still queued (read, not claimed)."""
    items = table(BatchItem)
    rows = await session.execute(
        select(items.c.batch_id, items.c.item_index, items.c.input).where(
            _item_keys_in(keys), items.c.status == ItemState.QUEUED
        )
    )
    return {(batch_id, index): value for batch_id, index, value in rows}


async def _start(
    session: AsyncSession, batch_ids: list[int], now: datetime
) -> list[tuple[int, str, str]]:
    """Move queued batches to processing; returns (id, org_id, family) of those moved."""
    if not batch_ids:
        return []
    result = await session.execute(
        update(Batch)
        .where(Batch.id.in_(batch_ids), Batch.status == BatchState.QUEUED)
        .values(status=BatchState.PROCESSING, started_at=now)
        .returning(Batch.id, Batch.org_id, Batch.family)
    )
    return [(row.id, row.org_id, row.family) for row in result]


@dataclass(frozen=True)
class Cancellation:
    """What `cancel` did: the items it cancelled and the batch after it."""

    item_indexes: list[int]
    progress: BatchProgressUpdate


class NotCancellable(Exception):
    """The batch is terminal or already cancelled."""


async def cancel(session: AsyncSession, *, batch: Batch, now: datetime) -> Cancellation:
    """Cancel every item not claimed yet, count and refund them; the batch is
    `cancelled` at once if nothing is in flight, else when its last item ends."""
    locked = (
        await session.execute(select(Batch).where(Batch.id == batch.id).with_for_update())
    ).scalar_one()
    if locked.cancelled_at is not None or locked.status in (
        BatchState.FINISHED,
        BatchState.CANCELLED,
    ):
        raise NotCancellable(f"batch {batch.id} is {locked.status}")
    rows = await session.execute(
        update(BatchItem)
        .where(
            BatchItem.batch_id == batch.id,
            BatchItem.status == ItemState.QUEUED,
            BatchItem.claimed_at.is_(None),
        )
        .values(status=ItemState.CANCELLED, finished_at=now)
        .returning(BatchItem.item_index)
    )
    indexes = sorted(row.item_index for row in rows)
    refund = len(indexes) * int((locked.params or {}).get("unit_credits", 0))
    processed = locked.processed_count + len(indexes)
    finished = processed >= locked.requested_count
    status = BatchState.CANCELLED if finished else locked.status
    values: dict[str, Any] = {
        "processed_count": processed,
        "cancelled_count": locked.cancelled_count + len(indexes),
        "credits_refunded": locked.credits_refunded + refund,
        "cancelled_at": now,
        "status": status,
    }
    if finished:
        values["finished_at"] = now
    await session.execute(update(Batch).where(Batch.id == batch.id).values(**values))
    progress = BatchProgressUpdate(
        batch_id=locked.id,
        org_id=locked.org_id,
        family=locked.family,
        requested=locked.requested_count,
        processed=processed,
        succeeded=locked.success_count,
        failed=locked.error_count,
        refund=refund,
        credits_refunded=values["credits_refunded"],
        finished=finished,
        cancelled=values["cancelled_count"],
        status=status,
    )
    return Cancellation(indexes, progress)


async def inputs_of(
    session: AsyncSession, *, batch_id: int, item_indexes: Sequence[int]
) -> list[str]:
    stmt = (
        select(BatchItem.input)
        .where(BatchItem.batch_id == batch_id, BatchItem.item_index.in_(list(item_indexes)))
        .order_by(BatchItem.item_index)
    )
    return list((await session.execute(stmt)).scalars())


async def failed_inputs(session: AsyncSession, *, batch_id: int) -> list[str]:
    """The inputs of the batch's failed items, in item order."""
    stmt = (
        select(BatchItem.input)
        .where(BatchItem.batch_id == batch_id, BatchItem.status == ItemState.FAILED)
        .order_by(BatchItem.item_index)
    )
    return list((await session.execute(stmt)).scalars())


async def overdue_items(
    session: AsyncSession, *, family: str, created_before: datetime, limit: int
) -> list[PendingItem]:
    """Items of `family` still queued in batches accepted before `created_before`."""
    stmt = (
        _pending_items_query()
        .where(Batch.family == family, Batch.created_at < created_before)
        .limit(limit)
    )
    return await _pending_items(session, stmt)


@dataclass(frozen=True)
class StaleBatch:
    """A batch whose listed items need their work records published again."""

    batch_id: int
    org_id: str
    family: str
    item_indexes: list[int]


async def take_stale(
    session: AsyncSession, *, cutoff: datetime, now: datetime, limit: int
) -> list[StaleBatch]:
    """Items still queued that no processor holds, in batches whose work was last
    published before `cutoff`; their batches are marked requeued at `now`.

    An item is stale when it was never claimed, or claimed before `cutoff` (its
    processor died, or the record that would bring it back was lost with the
    broker). Batch rows are locked with SKIP LOCKED (PostgreSQL), so concurrent
    sweepers take different batches, and a batch is requeued at most once a lease.
    """
    stmt = (
        select(BatchItem.batch_id, BatchItem.item_index, Batch.org_id, Batch.family)
        .join(Batch, Batch.id == BatchItem.batch_id)
        .where(
            Batch.status.in_([BatchState.QUEUED, BatchState.PROCESSING]),
            func.coalesce(Batch.requeued_at, Batch.created_at) < cutoff,
            BatchItem.status == ItemState.QUEUED,
            or_(BatchItem.claimed_at.is_(None), BatchItem.claimed_at < cutoff),
        )
        .order_by(BatchItem.batch_id, BatchItem.item_index)
        .limit(limit)
    )
    if supports_skip_locked(session):
        stmt = stmt.with_for_update(of=Batch, skip_locked=True)
    stale: dict[int, StaleBatch] = {}
    for row in await session.execute(stmt):
        batch = stale.setdefault(row.batch_id, StaleBatch(row.batch_id, row.org_id, row.family, []))
        batch.item_indexes.append(row.item_index)
    if stale:
        await session.execute(
            update(Batch).where(Batch.id.in_(sorted(stale))).values(requeued_at=now)
        )
    return list(stale.values())


async def mark_items_started(
    session: AsyncSession, *, keys: Iterable[ItemKey], now: datetime
) -> set[ItemKey]:
    """Claim items whose work begins now and note when (the item stays queued until
    its outcome is recorded); returns those still queued, i.e. not cancelled."""
    key_list = list(keys)
    claimed = set(await _claim(session, key_list, now))
    if claimed:
        items = table(BatchItem)
        await session.execute(
            update(items)
            .where(_item_keys_in(sorted(claimed)), items.c.started_at.is_(None))
            .values(started_at=now)
        )
    return claimed


async def record_outcomes(
    session: AsyncSession, *, outcomes: Sequence[Outcome], now: datetime
) -> tuple[list[Outcome], list[BatchProgressUpdate]]:
    """Apply outcomes of items still queued; returns those applied and the batches touched.

    Items already terminal (a redelivery, or another processor after a
    rebalance) are skipped, so counters and refunds move exactly once.
    """
    locked = await _lock_batches(session, {o.batch_id for o in outcomes})
    applied = await _lock_queued(session, outcomes)
    if not applied:
        return [], []
    await _write_outcomes(session, applied, now)
    progress = [
        await _advance_batch(session, batch_id, locked[batch_id], group, now)
        for batch_id, group in _by_batch(applied)
    ]
    return applied, progress


async def _write_outcomes(session: AsyncSession, outcomes: list[Outcome], now: datetime) -> None:
    """Set the items' terminal status, error code and result (items still queued only)."""
    items = table(BatchItem)
    if supports_skip_locked(session):
        await _write_outcome_runs(session, outcomes, now)
        return
    # SQLite: a Core UPDATE run with many parameter sets (executemany), not the ORM's
    # bulk update, which insists on primary-key parameter names.
    await session.execute(
        update(items)
        .where(
            items.c.batch_id == bindparam("b_batch_id"),
            items.c.item_index == bindparam("b_item_index"),
            items.c.status == ItemState.QUEUED,
        )
        .values(
            status=bindparam("b_status"),
            error_code=bindparam("b_error_code"),
            result=bindparam("b_result", type_=items.c.result.type),
            finished_at=now,
        ),
        [
            {
                "b_batch_id": o.batch_id,
                "b_item_index": o.item_index,
                "b_status": _status(o),
                "b_error_code": o.error_code,
                "b_result": o.result,
            }
            for o in outcomes
        ],
    )


async def _write_outcome_runs(
    session: AsyncSession, outcomes: list[Outcome], now: datetime
) -> None:
    """PostgreSQL: one parameter set per run of consecutive items (not per item), each
    item taking its values from arrays at its offset in the run:

        UPDATE batch_items SET status = (:statuses)[item_index - :first + 1], …
        WHERE batch_id = :batch_id AND item_index BETWEEN :first AND :last

    an index range scan, whatever the table's statistics. Results are serialised by the
    `result` column type's own bind processor and cast to JSONB, so they are stored as
    a JSON parameter would store them (None as JSON null).
    """
    items = table(BatchItem)
    serialize = _json_serializer(session)
    by_key = {o.key: o for o in outcomes}
    first = bindparam("o_first", type_=Integer)
    offset = items.c.item_index - first + 1
    # Parenthesised: PostgreSQL subscripts `($1::VARCHAR[])[i]`, not `$1::VARCHAR[][i]`.
    statuses = Grouping(bindparam("o_statuses", type_=ARRAY(String)))
    error_codes = Grouping(bindparam("o_error_codes", type_=ARRAY(String)))
    results = Grouping(bindparam("o_results", type_=ARRAY(Text)))
    parameters = []
    for batch_id, low, high in pair_runs(by_key):
        run = [by_key[batch_id, index] for index in range(low, high + 1)]
        parameters.append(
            {
                "o_batch_id": batch_id,
                "o_first": low,
                "o_last": high,
                "o_statuses": [_status(o) for o in run],
                "o_error_codes": [o.error_code for o in run],
                "o_results": [serialize(o.result) for o in run],
            }
        )
    await session.execute(
        update(items)
        .where(
            items.c.batch_id == bindparam("o_batch_id"),
            items.c.item_index.between(first, bindparam("o_last")),
            items.c.status == ItemState.QUEUED,
        )
        .values(
            status=statuses[offset],
            error_code=error_codes[offset],
            result=cast(results[offset], JSONB),
            finished_at=now,
        ),
        parameters,
    )


def _status(outcome: Outcome) -> str:
    return ItemState.SUCCEEDED if outcome.succeeded else ItemState.FAILED


def _json_serializer(session: AsyncSession) -> Callable[[Any], Any]:
    """The function the `result` column's type binds a value with on this dialect (JSON
    text; None becomes JSON null, as in the executemany form)."""
    dialect = session.get_bind().dialect
    process = table(BatchItem).c.result.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:  # JSON types always serialise; never reached
        raise RuntimeError("the result column has no bind processor")
    return process


@dataclass(frozen=True)
class _LockedBatch:
    """What claims and outcomes need of a batch, read as its row is locked."""

    org_id: str
    family: str
    status: str
    params: dict[str, Any]


async def _lock_batches(session: AsyncSession, batch_ids: set[int]) -> dict[int, _LockedBatch]:
    """Lock batch rows in id order before any of their items (PostgreSQL), and read them.

    Claims, outcomes and cancels all take locks in this order (batches, then items),
    so that they queue up instead of deadlocking. Reading the rows here spares the
    items' queries a join, and a batch's parameters are decoded once, not per item.
    """
    if not batch_ids:
        return {}
    stmt = (
        select(Batch.id, Batch.org_id, Batch.family, Batch.status, Batch.params)
        .where(Batch.id.in_(sorted(batch_ids)))
        .order_by(Batch.id)
    )
    if supports_skip_locked(session):
        stmt = stmt.with_for_update()
    return {
        id_: _LockedBatch(org_id, family, status, params or {})
        for id_, org_id, family, status, params in await session.execute(stmt)
    }


async def _lock_queued(session: AsyncSession, outcomes: Sequence[Outcome]) -> list[Outcome]:
    by_key = {o.key: o for o in outcomes}
    if not by_key:
        return []
    items = table(BatchItem)
    stmt = select(items.c.batch_id, items.c.item_index).where(
        _item_keys_in(list(by_key)), items.c.status == ItemState.QUEUED
    )
    if supports_skip_locked(session):
        # Lock in key order so two processors never deadlock on the same rows.
        stmt = stmt.order_by(items.c.batch_id, items.c.item_index).with_for_update()
    queued = {(row.batch_id, row.item_index) for row in await session.execute(stmt)}
    return [o for key, o in by_key.items() if key in queued]


def _by_batch(outcomes: Sequence[Outcome]) -> list[tuple[int, list[Outcome]]]:
    groups: dict[int, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.batch_id].append(outcome)
    return sorted(groups.items())


@functools.cache
def _advance_statement() -> Update:
    """`_advance_batch`'s statement, built once: building its `CASE` expressions for
    every batch of every chunk was a tenth of the processor's CPU."""
    c = table(Batch).c
    count = bindparam("a_count", type_=Integer)
    done = c.processed_count + count >= c.requested_count
    # A cancelled batch whose in-flight items just ended is `cancelled`.
    final = case((c.cancelled_at.is_not(None), BatchState.CANCELLED), else_=BatchState.FINISHED)
    return (
        update(table(Batch))
        .where(c.id == bindparam("a_batch_id"))
        .values(
            processed_count=c.processed_count + count,
            success_count=c.success_count + bindparam("a_succeeded", type_=Integer),
            error_count=c.error_count + bindparam("a_failed", type_=Integer),
            credits_refunded=c.credits_refunded + bindparam("a_refund", type_=Integer),
            status=case((done, final), else_=c.status),
            finished_at=case(
                (done, bindparam("a_now", type_=c.finished_at.type)), else_=c.finished_at
            ),
        )
        .returning(
            c.org_id,
            c.family,
            c.requested_count,
            c.processed_count,
            c.success_count,
            c.error_count,
            c.cancelled_count,
            c.credits_refunded,
            c.status,
        )
    )


async def _advance_batch(
    session: AsyncSession,
    batch_id: int,
    batch: _LockedBatch,
    outcomes: list[Outcome],
    now: datetime,
) -> BatchProgressUpdate:
    """Count the outcomes into their batch and refund its failed items, finishing the
    batch when they were its last, all in one statement: the `SET` expressions see the
    row as it was, so `done` is true exactly for the update that reaches the count."""
    succeeded = sum(1 for o in outcomes if o.succeeded)
    failed = len(outcomes) - succeeded
    refund = failed * int(batch.params.get("unit_credits", 0))
    row = (
        await session.execute(
            _advance_statement(),
            {
                "a_batch_id": batch_id,
                "a_count": len(outcomes),
                "a_succeeded": succeeded,
                "a_failed": failed,
                "a_refund": refund,
                "a_now": now,
            },
        )
    ).one()
    return BatchProgressUpdate(
        batch_id=batch_id,
        org_id=row.org_id,
        family=row.family,
        requested=row.requested_count,
        processed=row.processed_count,
        succeeded=row.success_count,
        failed=row.error_count,
        refund=refund,
        credits_refunded=row.credits_refunded,
        finished=row.processed_count >= row.requested_count,
        cancelled=row.cancelled_count,
        status=row.status,
    )


# --- operators (`batchplane admin`) ------------------------------------------------------


async def find_batch(session: AsyncSession, *, batch_id: int) -> Batch | None:
    """Any organisation's batch: for operators, never for callers."""
    return await session.get(Batch, batch_id)


async def list_batches(
    session: AsyncSession,
    *,
    limit: int,
    org_id: str | None = None,
    status: str | None = None,
    family: str | None = None,
) -> list[Batch]:
    """The newest batches, optionally of one organisation, status or family."""
    stmt = select(Batch)
    if org_id is not None:
        stmt = stmt.where(Batch.org_id == org_id)
    if status is not None:
        stmt = stmt.where(Batch.status == status)
    if family is not None:
        stmt = stmt.where(Batch.family == family)
    return list((await session.execute(stmt.order_by(Batch.id.desc()).limit(limit))).scalars())
