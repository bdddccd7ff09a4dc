"""gRPC servicer of ScrapeService (seed 004)."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import struct_pb2

from batchplane.api.scrape.v1 import scrape_pb2, scrape_pb2_grpc
from batchplane.core.clock import rfc3339
from batchplane.core.errors import NotFound
from batchplane.core.scopes import SCRAPE_READ, SCRAPE_WRITE
from batchplane.core.states import ItemState
from batchplane.db import batches
from batchplane.db.engine import Database
from batchplane.db.models import Batch, BatchItem
from batchplane.intake.guard import Admitted, Guard
from batchplane.intake.idempotency import IdempotencyGate, Reply, request_fingerprint
from batchplane.intake.scrapes import FAMILY, MAX_URLS, ScrapeIntake, parse_scrape_json
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.intake.wire import Context, call_metadata, text_or_null, time_or_null
from batchplane.intake.wire_errors import send_http_status

_BATCH_ID = re.compile(r"^batch_([1-9][0-9]{0,9})$")
_JOB_ID = re.compile(r"^job_([1-9][0-9]{0,9})_([0-9]{1,4})$")


def batch_public_id(batch_id: int) -> str:
    return f"batch_{batch_id}"


def job_public_id(batch_id: int, index: int) -> str:
    return f"job_{batch_id}_{index}"


def job_status(item: BatchItem) -> str:
    """The seed's job vocabulary over the platform's item states."""
    if item.status == ItemState.SUCCEEDED:
        return "completed"
    if item.status == ItemState.FAILED:
        return "failed"
    if item.status == ItemState.CANCELLED:
        return "cancelled"
    return "processing" if item.started_at is not None else "pending"


def items_of(item: BatchItem) -> list[dict[str, Any]]:
    return list((item.result or {}).get("items", []))


class ScrapeApi(scrape_pb2_grpc.ScrapeServiceServicer):
    def __init__(
        self,
        database: Database,
        guard: Guard,
        gate: IdempotencyGate,
        intake: ScrapeIntake,
        webhook_urls: WebhookUrlPolicy,
    ) -> None:
        self._database = database
        self._guard = guard
        self._gate = gate
        self._intake = intake
        self._webhook_urls = webhook_urls

    async def CreateScrapeBatch(
        self, request: scrape_pb2.CreateScrapeBatchRequest, context: Context
    ) -> scrape_pb2.ScrapeBatch:
        admitted = await self._guard.admit(call_metadata(context), scope=SCRAPE_WRITE, bulk=True)
        raw = request.http_body.data
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint("scrape-batch", request, raw),
            response_type=scrape_pb2.ScrapeBatch,
            produce=lambda: self._create(admitted, raw),
        )

    async def _create(self, admitted: Admitted, raw: bytes) -> Reply[scrape_pb2.ScrapeBatch]:
        cap = min(admitted.plan.max_batch_size, MAX_URLS)
        scrape = parse_scrape_json(
            raw, caller_org=admitted.caller.org_id, cap=cap, webhook_urls=self._webhook_urls
        )
        batch = await self._intake.submit(admitted.caller, admitted.plan, scrape)
        async with self._database.transaction() as session:
            items = await batches.list_items(session, batch_id=batch.id)
        return Reply(_batch_message(batch, items), status=200)

    async def GetScrapeBatch(
        self, request: scrape_pb2.GetScrapeBatchRequest, context: Context
    ) -> scrape_pb2.ScrapeBatch:
        admitted = await self._guard.admit(call_metadata(context), scope=SCRAPE_READ)
        match = _BATCH_ID.match(request.batch_id)
        batch, items = await self._load(admitted, int(match.group(1)) if match else None)
        if batch is None:
            raise NotFound(f"scrape batch {request.batch_id} not found")
        await send_http_status(context, 200, admitted.headers)
        return _batch_message(batch, items)

    async def GetScrapeJob(
        self, request: scrape_pb2.GetScrapeJobRequest, context: Context
    ) -> scrape_pb2.ScrapeJobDetail:
        admitted = await self._guard.admit(call_metadata(context), scope=SCRAPE_READ)
        match = _JOB_ID.match(request.job_id)
        batch, items = await self._load(admitted, int(match.group(1)) if match else None)
        index = int(match.group(2)) if match else -1
        if batch is None or not 0 <= index < len(items):
            raise NotFound(f"scrape job {request.job_id} not found")
        await send_http_status(context, 200, admitted.headers)
        return _job_detail(batch, items[index])

    async def _load(
        self, admitted: Admitted, batch_id: int | None
    ) -> tuple[Batch | None, list[BatchItem]]:
        if batch_id is None or batch_id > 2**31 - 1:
            return None, []
        async with self._database.transaction() as session:
            batch = await batches.get_batch(
                session, batch_id=batch_id, org_id=admitted.caller.org_id
            )
            if batch is None or batch.family != FAMILY:
                return None, []
            return batch, await batches.list_items(session, batch_id=batch.id)


def _batch_message(batch: Batch, items: list[BatchItem]) -> scrape_pb2.ScrapeBatch:
    statuses = [job_status(item) for item in items]
    completed, failed = statuses.count("completed"), statuses.count("failed")
    return scrape_pb2.ScrapeBatch(
        batch_id=batch_public_id(batch.id),
        total_urls=len(items),
        jobs=[
            scrape_pb2.ScrapeJob(
                job_id=job_public_id(batch.id, item.item_index), url=item.input, status=status
            )
            for item, status in zip(items, statuses, strict=True)
        ],
        progress=scrape_pb2.ScrapeProgress(
            completed=completed,
            failed=failed,
            # A cancelled job is neither done nor pending.
            pending=len(items) - completed - failed - statuses.count("cancelled"),
            total_items_extracted=sum(len(items_of(item)) for item in items),
        ),
        created_at=rfc3339(batch.created_at),
    )


def _job_detail(batch: Batch, item: BatchItem) -> scrape_pb2.ScrapeJobDetail:
    extracted = items_of(item)
    structs = []
    for value in extracted:
        struct = struct_pb2.Struct()
        struct.update(value)
        structs.append(struct)
    return scrape_pb2.ScrapeJobDetail(
        job_id=job_public_id(batch.id, item.item_index),
        batch_id=batch_public_id(batch.id),
        url=item.input,
        status=job_status(item),
        items=structs,
        items_count=len(extracted),
        error=text_or_null((item.result or {}).get("error") or item.error_code or None),
        created_at=rfc3339(batch.created_at),
        started_at=time_or_null(item.started_at),
        finished_at=time_or_null(item.finished_at),
    )
