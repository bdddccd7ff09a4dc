"""Batches and their items (owner of batches and batch_items).

Item identity is (batch_id, item_index). Outcomes are recorded only for items
still queued, under a row lock, so a redelivered item is never counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.states import BatchState, ItemState
from batchplane.db.dialect import supports_skip_locked
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
        credits_charged=credits_charged,
        credits_refunded=0,
        params=params,
        created_by=created_by,
        created_at=now,
    )
    session.add(batch)
    await session.flush()
    await session.execute(
        insert(BatchItem),
        [
            {"batch_id": batch.id, "item_index": i, "input": value, "status": ItemState.QUEUED}
            for i, value in enumerate(inputs)
        ],
    )
    return batch


async def get_batch(session: AsyncSession, *, batch_id: int, org_id: str) -> Batch | None:
    """The organisation's batch, or None (also for another organisation's batch)."""
    batch = await session.get(Batch, batch_id)
    return batch if batch is not None and batch.org_id == org_id else None


async def list_items(session: AsyncSession, *, batch_id: int) -> list[BatchItem]:
    stmt = select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.item_index)
    return list((await session.execute(stmt)).scalars())


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


async def load_pending(session: AsyncSession, *, keys: Iterable[ItemKey]) -> list[PendingItem]:
    """Items among `keys` that are still queued, with their batch's parameters."""
    key_list = list(keys)
    if not key_list:
        return []
    stmt = _pending_items_query().where(
        tuple_(BatchItem.batch_id, BatchItem.item_index).in_(key_list)
    )
    return await _pending_items(session, stmt)


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


async def mark_items_started(
    session: AsyncSession, *, keys: Iterable[ItemKey], now: datetime
) -> None:
    """Note when items' work began (the item stays queued until its outcome is recorded)."""
    key_list = list(keys)
    if key_list:
        await session.execute(
            update(BatchItem)
            .where(
                tuple_(BatchItem.batch_id, BatchItem.item_index).in_(key_list),
                BatchItem.started_at.is_(None),
            )
            .values(started_at=now)
        )


async def mark_started(
    session: AsyncSession, *, batch_ids: Iterable[int], now: datetime
) -> list[tuple[int, str, str]]:
    """Move queued batches to processing; returns (id, org_id, family) of those moved."""
    ids = sorted(set(batch_ids))
    if not ids:
        return []
    result = await session.execute(
        update(Batch)
        .where(Batch.id.in_(ids), Batch.status == BatchState.QUEUED)
        .values(status=BatchState.PROCESSING, started_at=now)
        .returning(Batch.id, Batch.org_id, Batch.family)
    )
    return [(row.id, row.org_id, row.family) for row in result]


async def record_outcomes(
    session: AsyncSession, *, outcomes: Sequence[Outcome], now: datetime
) -> tuple[list[Outcome], list[BatchProgressUpdate]]:
    """Apply outcomes of items still queued; returns those applied and the batches touched.

    Items already terminal (a redelivery, or another processor after a
    rebalance) are skipped, so counters and refunds move exactly once.
    """
    applied = await _lock_queued(session, outcomes)
    if not applied:
        return [], []
    items = table(BatchItem)
    # A Core UPDATE run with many parameter sets (executemany), not the ORM's
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
                "b_status": ItemState.SUCCEEDED if o.succeeded else ItemState.FAILED,
                "b_error_code": o.error_code,
                "b_result": o.result,
            }
            for o in applied
        ],
    )
    progress = [
        await _advance_batch(session, batch_id, group, now)
        for batch_id, group in _by_batch(applied)
    ]
    return applied, progress


async def _lock_queued(session: AsyncSession, outcomes: Sequence[Outcome]) -> list[Outcome]:
    by_key = {o.key: o for o in outcomes}
    if not by_key:
        return []
    stmt = select(BatchItem.batch_id, BatchItem.item_index).where(
        tuple_(BatchItem.batch_id, BatchItem.item_index).in_(list(by_key)),
        BatchItem.status == ItemState.QUEUED,
    )
    if supports_skip_locked(session):
        # Lock in key order so two processors never deadlock on the same rows.
        stmt = stmt.order_by(BatchItem.batch_id, BatchItem.item_index).with_for_update()
    queued = {(row.batch_id, row.item_index) for row in await session.execute(stmt)}
    return [o for key, o in by_key.items() if key in queued]


def _by_batch(outcomes: Sequence[Outcome]) -> list[tuple[int, list[Outcome]]]:
    groups: dict[int, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.batch_id].append(outcome)
    return sorted(groups.items())


async def _advance_batch(
    session: AsyncSession, batch_id: int, outcomes: list[Outcome], now: datetime
) -> BatchProgressUpdate:
    succeeded = sum(1 for o in outcomes if o.succeeded)
    failed = len(outcomes) - succeeded
    params = await session.scalar(select(Batch.params).where(Batch.id == batch_id))
    refund = failed * int((params or {}).get("unit_credits", 0))
    row = (
        await session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(
                processed_count=Batch.processed_count + len(outcomes),
                success_count=Batch.success_count + succeeded,
                error_count=Batch.error_count + failed,
                credits_refunded=Batch.credits_refunded + refund,
            )
            .returning(
                Batch.org_id,
                Batch.family,
                Batch.requested_count,
                Batch.processed_count,
                Batch.success_count,
                Batch.error_count,
                Batch.credits_refunded,
            )
        )
    ).one()
    finished = row.processed_count >= row.requested_count
    if finished:
        await session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(status=BatchState.FINISHED, finished_at=now)
        )
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
        finished=finished,
    )
