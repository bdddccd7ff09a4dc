"""Accepting enrichment tasks: resolve entities, reuse fresh records, meter, charge,
store the new records and queue them — in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import Clock, as_utc
from batchplane.core.plans import Plan
from batchplane.core.settings import EnrichmentSettings, KafkaSettings
from batchplane.db import enrichments
from batchplane.db.engine import Database
from batchplane.db.models import Enrichment
from batchplane.enrichment.tasks import EntityRef, Task, TaskBatch, validation_error
from batchplane.intake.acceptance import accept_batch
from batchplane.intake.auth import Caller
from batchplane.intake.metering import meter_or_refuse

FAMILY = "enrichment"


@dataclass(frozen=True)
class ResolvedTask:
    entity_id: str
    entity_type: str
    field: str


class EnrichmentIntake:
    """Stores triggered enrichments and reads them back for the query routes."""

    def __init__(
        self,
        database: Database,
        *,
        settings: EnrichmentSettings,
        kafka: KafkaSettings,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._settings = settings
        self._kafka = kafka
        self._clock = clock
        self._on_commit = on_commit

    async def trigger(self, caller: Caller, plan: Plan, batch: TaskBatch) -> list[Enrichment]:
        """One record per task, in request order: fresh existing ones, or new pending ones."""
        now = self._clock.now()
        fresh_after = now - timedelta(seconds=self._settings.freshness_s)
        async with self._database.transaction() as session:
            resolved = [await self._resolve(session, t, register=True) for t in batch.tasks]
            tasks = [r for r in resolved if r is not None]  # registering never yields None
            latest = await enrichments.latest_records(
                session, org_id=caller.org_id, pairs=[(t.entity_id, t.field) for t in tasks]
            )
            chosen: dict[tuple[str, str], Enrichment] = {}
            for task in tasks:
                pair = (task.entity_id, task.field)
                existing = latest.get(pair)
                if existing is not None and _fresh(existing, fresh_after):
                    chosen[pair] = existing
            new = {(t.entity_id, t.field): t for t in tasks if (t.entity_id, t.field) not in chosen}
            if new:
                chosen |= await self._create(
                    session, caller, plan, list(new.values()), batch, now, metered_units=len(tasks)
                )
            else:
                await meter_or_refuse(session, caller.org_id, plan, len(tasks), now)
        if new:
            self._on_commit()
        return [chosen[(t.entity_id, t.field)] for t in tasks]

    async def query(self, caller: Caller, batch: TaskBatch) -> list[Enrichment]:
        """The latest record of each task, request order, tasks without one omitted."""
        async with self._database.transaction() as session:
            resolved = [await self._resolve(session, t, register=False) for t in batch.tasks]
            tasks = [r for r in resolved if r is not None]
            latest = await enrichments.latest_records(
                session, org_id=caller.org_id, pairs=[(t.entity_id, t.field) for t in tasks]
            )
        return [latest[p] for p in ((t.entity_id, t.field) for t in tasks) if p in latest]

    async def get(self, caller: Caller, record_id: str) -> Enrichment | None:
        async with self._database.transaction() as session:
            return await enrichments.get_record(session, org_id=caller.org_id, record_id=record_id)

    async def _resolve(
        self, session: AsyncSession, task: Task, *, register: bool
    ) -> ResolvedTask | None:
        """The task's entity; None when it names one not registered (queries only)."""
        ref: EntityRef = task.ref
        if ref.entity_id is not None:
            entity = await enrichments.get_entity(session, entity_id=ref.entity_id)
            if entity is None:
                if register:
                    raise validation_error(f"unknown entityId {ref.entity_id}")
                return None
            if ref.type is not None and ref.type != entity.type:
                raise validation_error(f"entity {entity.id} is a {entity.type}, not a {ref.type}")
        else:
            assert ref.type is not None
            assert ref.key is not None
            if register:
                entity = await enrichments.register_entity(
                    session, type_=ref.type, key=ref.key, now=self._clock.now()
                )
            else:
                found = await enrichments.find_entity(session, type_=ref.type, key=ref.key)
                if found is None:
                    return None
                entity = found
        return ResolvedTask(entity.id, entity.type, task.field)

    async def _create(
        self,
        session: AsyncSession,
        caller: Caller,
        plan: Plan,
        tasks: list[ResolvedTask],
        request: TaskBatch,
        now: datetime,
        *,
        metered_units: int,
    ) -> dict[tuple[str, str], Enrichment]:
        records = [pending_record(caller, t, now) for t in tasks]
        accepted = await accept_batch(
            session,
            caller=caller,
            plan=plan,
            family=FAMILY,
            inputs=[r.id for r in records],
            params={"webhook_url": request.webhook_url},
            unit_credits=self._settings.credits_per_task,
            metered_units=metered_units,
            kafka=self._kafka,
            now=now,
        )
        for record in records:
            record.credit_transaction_id = f"credit_{accepted.charge_entry_id}"
        await enrichments.add_records(session, records=records)
        return {(r.entity_id, r.field): r for r in records}


def pending_record(caller: Caller, task: ResolvedTask, now: datetime) -> Enrichment:
    """A new enrichment record of the caller's organisation, waiting for its item."""
    return Enrichment(
        id=str(uuid.uuid4()),
        org_id=caller.org_id,
        entity_id=task.entity_id,
        entity_type=task.entity_type,
        field=task.field,
        status=enrichments.PENDING,
        error=None,
        data_found=None,
        data=None,
        created_by=caller.user_id,
        global_enrichment_id=None,
        credit_transaction_id=None,
        created_at=now,
        updated_at=now,
    )


def _fresh(record: Enrichment, fresh_after: datetime) -> bool:
    return record.status == enrichments.FINISHED and as_utc(record.updated_at) >= fresh_after


class EnrichmentBatchHooks:
    """Cancel and retry for enrichment batches, whose items are enrichment records."""

    async def cancelled(self, session: AsyncSession, *, inputs: list[str], now: datetime) -> None:
        """Cancelled items' records end `failed` with the error `cancelled`."""
        await enrichments.finish_records(
            session,
            updates=[
                enrichments.RecordUpdate(
                    record_id, enrichments.FAILED, None, None, "cancelled", None
                )
                for record_id in inputs
            ],
            now=now,
        )

    async def retry_inputs(
        self, session: AsyncSession, *, caller: Caller, inputs: list[str], now: datetime
    ) -> list[str]:
        """Fresh pending records for the same entity and field as each failed one."""
        failed = await enrichments.records_by_id(session, ids=inputs)
        records = [
            pending_record(caller, ResolvedTask(old.entity_id, old.entity_type, old.field), now)
            for old in (failed[record_id] for record_id in inputs if record_id in failed)
        ]
        await enrichments.add_records(session, records=records)
        return [r.id for r in records]
