"""gRPC servicer of EnrichmentOperationsService (seed 002): camelCase bare arrays."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2

from batchplane.api.enrichment.v1 import enrichment_pb2, enrichment_pb2_grpc
from batchplane.core.errors import BatchplaneError, InvalidRequest, NotFound
from batchplane.core.scopes import ENRICHMENT_READ, ENRICHMENT_WRITE
from batchplane.db.enrichments import record_json
from batchplane.enrichment.tasks import MAX_TASKS, parse_task_batch, validation_error
from batchplane.intake.enrichments import EnrichmentIntake
from batchplane.intake.guard import Admitted, Guard
from batchplane.intake.idempotency import IdempotencyGate, Reply, request_fingerprint
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.intake.wire import Context, call_metadata, json_body
from batchplane.intake.wire_errors import send_http_status

SERVICE_NAME = enrichment_pb2.DESCRIPTOR.services_by_name["EnrichmentOperationsService"].full_name

_SEED_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 500: "INTERNAL_ERROR"}


def enrichment_error_body(error: BatchplaneError) -> dict[str, Any]:
    """Seed 002's error shape: `{"error": "VALIDATION_ERROR", "message": …}`."""
    code = _SEED_CODES.get(error.http_status, error.code.upper())
    return {"error": code, "message": error.message}


class EnrichmentOperationsApi(enrichment_pb2_grpc.EnrichmentOperationsServiceServicer):
    def __init__(
        self,
        guard: Guard,
        gate: IdempotencyGate,
        intake: EnrichmentIntake,
        *,
        extra_suffixes: frozenset[str],
        webhook_urls: WebhookUrlPolicy,
    ) -> None:
        self._guard = guard
        self._gate = gate
        self._intake = intake
        self._extra_suffixes = extra_suffixes
        self._webhook_urls = webhook_urls

    async def TriggerEnrichments(
        self, request: enrichment_pb2.EnrichmentTasksRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(
            call_metadata(context), scope=ENRICHMENT_WRITE, bulk=True
        )
        raw = request.http_body.data
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint("enrichment-trigger", request, raw),
            response_type=httpbody_pb2.HttpBody,
            produce=lambda: self._trigger(admitted, raw),
        )

    async def _trigger(self, admitted: Admitted, raw: bytes) -> Reply[httpbody_pb2.HttpBody]:
        batch = parse_task_batch(
            raw, cap=self._cap(admitted), extra_suffixes=self._extra_suffixes, trigger=True
        )
        try:
            self._webhook_urls.check(batch.webhook_url)
        except InvalidRequest as error:
            raise validation_error(error.message) from None
        records = await self._intake.trigger(admitted.caller, admitted.plan, batch)
        return Reply(json_body([record_json(r) for r in records]), status=202)

    async def QueryEnrichments(
        self, request: enrichment_pb2.EnrichmentTasksRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=ENRICHMENT_READ)
        batch = parse_task_batch(
            request.http_body.data,
            cap=self._cap(admitted),
            extra_suffixes=self._extra_suffixes,
            trigger=False,
        )
        records = await self._intake.query(admitted.caller, batch)
        await send_http_status(context, 200, admitted.headers)
        return json_body([record_json(r) for r in records])

    async def GetEnrichment(
        self, request: enrichment_pb2.GetEnrichmentRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=ENRICHMENT_READ)
        record = await self._intake.get(admitted.caller, request.id)
        if record is None:
            raise NotFound(f"enrichment {request.id} not found")
        await send_http_status(context, 200, admitted.headers)
        return json_body(record_json(record, with_data=True))

    @staticmethod
    def _cap(admitted: Admitted) -> int:
        return min(admitted.plan.max_batch_size, MAX_TASKS)
