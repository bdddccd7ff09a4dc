"""gRPC servicer of BulkLookupService: translates between wire and domain types."""

from __future__ import annotations

from typing import Any

from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from batchplane.core.clock import rfc3339
from batchplane.core.errors import NotFound
from batchplane.core.json_body import string_array
from batchplane.core.scopes import LOOKUP_WRITE
from batchplane.core.settings import LookupSettings
from batchplane.db import batches, lookups
from batchplane.db.engine import Database
from batchplane.db.models import Batch, BatchItem
from batchplane.intake.guard import Admitted, Guard
from batchplane.intake.idempotency import IdempotencyGate, Reply, request_fingerprint
from batchplane.intake.lookups import FAMILY, LookupIntake, LookupRequest, parse_lookup_json
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.intake.wire import (
    NULL,
    Context,
    call_metadata,
    text_or_null,
    time_or_null,
)
from batchplane.intake.wire_errors import send_http_status


def batch_path(batch_id: int) -> str:
    return f"/api/v1/bulk/lookup/{batch_id}"


class BulkLookupApi(lookup_pb2_grpc.BulkLookupServiceServicer):
    """The seed 000 routes, for JSON clients (via Envoy) and gRPC callers alike."""

    def __init__(
        self,
        database: Database,
        guard: Guard,
        gate: IdempotencyGate,
        intake: LookupIntake,
        settings: LookupSettings,
        webhook_urls: WebhookUrlPolicy,
    ) -> None:
        self._database = database
        self._guard = guard
        self._gate = gate
        self._intake = intake
        self._settings = settings
        self._webhook_urls = webhook_urls

    async def CreateBulkLookup(
        self, request: lookup_pb2.CreateBulkLookupRequest, context: Context
    ) -> lookup_pb2.BulkLookupBatch:
        admitted = await self._guard.admit(call_metadata(context), scope=LOOKUP_WRITE, bulk=True)
        http_body = request.http_body.data if request.HasField("http_body") else None
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint("bulk-lookup", request, http_body),
            response_type=lookup_pb2.BulkLookupBatch,
            produce=lambda: self._create(admitted, request, http_body),
        )

    async def _create(
        self,
        admitted: Admitted,
        request: lookup_pb2.CreateBulkLookupRequest,
        http_body: bytes | None,
    ) -> Reply[lookup_pb2.BulkLookupBatch]:
        cap = min(admitted.plan.max_batch_size, self._settings.max_domains)
        if http_body is not None:
            lookup = parse_lookup_json(http_body, self._settings, max_domains=cap)
        else:
            lookup = self._from_typed(request, cap)
        self._webhook_urls.check(lookup.webhook_url)
        batch = await self._intake.submit(admitted.caller, admitted.plan, lookup)
        return Reply(
            lookup_pb2.BulkLookupBatch(**_batch_fields(batch)),
            status=202,
            headers={"location": batch_path(batch.id)},
        )

    async def GetBulkLookup(
        self, request: lookup_pb2.GetBulkLookupRequest, context: Context
    ) -> lookup_pb2.BulkLookupBatchWithResults:
        admitted = await self._guard.admit(call_metadata(context), scope=LOOKUP_WRITE)
        async with self._database.transaction() as session:
            batch = await batches.get_batch(
                session, batch_id=request.id, org_id=admitted.caller.org_id
            )
            if batch is None or batch.family != FAMILY:
                raise NotFound(f"bulk lookup {request.id} not found")
            items = await batches.list_items(session, batch_id=batch.id)
        await send_http_status(context, 200, admitted.headers)
        return lookup_pb2.BulkLookupBatchWithResults(
            **_batch_fields(batch), results=[_item_result(item) for item in items]
        )

    async def GetList(
        self, request: lookup_pb2.GetListRequest, context: Context
    ) -> lookup_pb2.DomainList:
        admitted = await self._guard.admit(call_metadata(context), scope=LOOKUP_WRITE)
        org_id = admitted.caller.org_id
        async with self._database.transaction() as session:
            if not await lookups.list_exists(session, org_id=org_id, list_id=request.list_id):
                raise NotFound(f"list {request.list_id} not found")
            domains = await lookups.list_domains(session, org_id=org_id, list_id=request.list_id)
            stored = await lookups.latest(session, domains=domains)
        await send_http_status(context, 200, admitted.headers)
        return lookup_pb2.DomainList(
            list_id=request.list_id,
            domains=[_list_entry(domain, stored.get(domain)) for domain in domains],
        )

    def _from_typed(self, request: lookup_pb2.CreateBulkLookupRequest, cap: int) -> LookupRequest:
        """gRPC callers send typed fields; validate them like the JSON body."""
        body: dict[str, Any] = {"domains": list(request.domains)}
        return LookupRequest(
            domains=string_array(body, "domains", max_items=cap),
            recompute=request.recompute,
            max_age_ms=(
                request.max_age
                if request.HasField("max_age")
                else self._settings.default_max_age_ms
            ),
            list_id=request.list_id if request.HasField("list_id") else None,
            webhook_url=request.webhook_url if request.HasField("webhook_url") else None,
        )


def _batch_fields(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status,
        "requested_count": batch.requested_count,
        "processed_count": batch.processed_count,
        "success_count": batch.success_count,
        "error_count": batch.error_count,
        "created_at": rfc3339(batch.created_at),
        "started_at": time_or_null(batch.started_at),
        "finished_at": time_or_null(batch.finished_at),
        "links": lookup_pb2.Links(self=batch_path(batch.id)),
    }


def _technologies(raw: list[dict[str, Any]]) -> list[lookup_pb2.Technology]:
    return [
        lookup_pb2.Technology(
            name=t["name"],
            categories=t.get("categories", []),
            version=text_or_null(t.get("version")),
            confidence=int(t.get("confidence", 100)),
        )
        for t in raw
    ]


def _item_result(item: BatchItem) -> lookup_pb2.DomainResult:
    result = item.result or {}
    return lookup_pb2.DomainResult(
        domain=item.input,
        status=item.status,
        technologies=_technologies(result.get("technologies", [])),
        error=text_or_null(item.error_code),
        looked_up_at=text_or_null(result.get("looked_up_at")),
        cached=bool(result.get("cached", False)),
    )


def _list_entry(domain: str, stored: lookups.StoredLookup | None) -> lookup_pb2.DomainResult:
    if stored is None:
        return lookup_pb2.DomainResult(
            domain=domain, status="pending", error=NULL, looked_up_at=NULL
        )
    return lookup_pb2.DomainResult(
        domain=domain,
        status="succeeded",
        technologies=_technologies(stored.technologies),
        error=NULL,
        looked_up_at=time_or_null(stored.looked_up_at),
        cached=True,
    )
