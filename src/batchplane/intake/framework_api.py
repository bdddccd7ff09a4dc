"""gRPC servicer of BatchFrameworkService: the synchronous batch endpoints of seed 001.

Intake authenticates, authorises, rate-limits, validates the envelope and meters;
the processor answers the items concurrently (ItemExecutorService); intake
answers 200 when every item succeeded and 207 when any failed.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from batchplane.api.framework.v1 import framework_pb2, framework_pb2_grpc
from batchplane.api.processor.v1 import executor_pb2, executor_pb2_grpc
from batchplane.core import tracing
from batchplane.core.clock import Clock
from batchplane.core.errors import InvalidRequest, Unavailable
from batchplane.core.json_body import parse_object, reject_unknown
from batchplane.core.scopes import ENRICHMENT_READ, INTELLIGENCE_READ, SIGNALS_READ
from batchplane.db import billing
from batchplane.db.engine import Database
from batchplane.intake.guard import Admitted, Guard
from batchplane.intake.idempotency import IdempotencyGate, Reply, request_fingerprint
from batchplane.intake.metering import meter_or_refuse
from batchplane.intake.wire import Context, call_metadata
from batchplane.intake.wire_errors import send_http_status

# The processor's method, as a span names it ("package.Service/Method").
EXECUTE_ITEMS = (
    executor_pb2.DESCRIPTOR.services_by_name["ItemExecutorService"].full_name + "/ExecuteItems"
)


def parse_requests(raw: bytes, *, cap: int) -> list[Any]:
    """The `requests` array of a JSON envelope (items are checked one by one later)."""
    body = parse_object(raw)
    reject_unknown(body, frozenset({"requests"}))
    return check_count(body.get("requests"), cap=cap)


def check_count(requests: Any, *, cap: int) -> list[Any]:
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("requests must be a non-empty array")
    if len(requests) > cap:
        raise InvalidRequest(
            f"requests must have at most {cap} items on this plan, got {len(requests)}",
            code="batch_too_large",
            extra={"max_batch_size": cap},
        )
    return requests


class BatchFrameworkApi(framework_pb2_grpc.BatchFrameworkServiceServicer):
    """`POST /api/v1/{intelligence,signals,enrichment}/batch` and `GET /api/v1/usage`."""

    def __init__(
        self,
        database: Database,
        guard: Guard,
        gate: IdempotencyGate,
        executor: executor_pb2_grpc.ItemExecutorServiceAsyncStub,
        *,
        clock: Clock,
        timeout_s: float,
    ) -> None:
        self._database = database
        self._guard = guard
        self._gate = gate
        self._executor = executor
        self._clock = clock
        self._timeout_s = timeout_s

    async def IntelligenceBatch(
        self, request: framework_pb2.SyncBatchRequest, context: Context
    ) -> framework_pb2.SyncBatchResponse:
        return await self._batch("intelligence", INTELLIGENCE_READ, request, context)

    async def SignalsBatch(
        self, request: framework_pb2.SyncBatchRequest, context: Context
    ) -> framework_pb2.SyncBatchResponse:
        return await self._batch("signals", SIGNALS_READ, request, context)

    async def EnrichmentBatch(
        self, request: framework_pb2.SyncBatchRequest, context: Context
    ) -> framework_pb2.SyncBatchResponse:
        return await self._batch("enrichment", ENRICHMENT_READ, request, context)

    async def GetUsage(
        self, request: framework_pb2.GetUsageRequest, context: Context
    ) -> framework_pb2.Usage:
        admitted = await self._guard.admit(call_metadata(context), scope=None)
        month = billing.month_of(self._clock.now())
        async with self._database.transaction() as session:
            units = await billing.usage(session, org_id=admitted.caller.org_id, month=month)
        quota = admitted.plan.monthly_units
        await send_http_status(context, 200, admitted.headers)
        return framework_pb2.Usage(
            org_id=admitted.caller.org_id,
            plan=admitted.plan.name,
            month=month,
            units=units,
            quota=quota,
            remaining=max(quota - units, 0),
        )

    async def _batch(
        self, family: str, scope: str, request: framework_pb2.SyncBatchRequest, context: Context
    ) -> framework_pb2.SyncBatchResponse:
        admitted = await self._guard.admit(call_metadata(context), scope=scope, bulk=True)
        http_body = request.http_body.data if request.HasField("http_body") else None
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint(f"{family}-batch", request, http_body),
            response_type=framework_pb2.SyncBatchResponse,
            produce=lambda: self._execute(admitted, family, request, http_body),
        )

    async def _execute(
        self,
        admitted: Admitted,
        family: str,
        request: framework_pb2.SyncBatchRequest,
        http_body: bytes | None,
    ) -> Reply[framework_pb2.SyncBatchResponse]:
        cap = admitted.plan.max_batch_size
        if http_body is not None:
            items = parse_requests(http_body, cap=cap)
        else:
            items = check_count([json_format.MessageToDict(r) for r in request.requests], cap=cap)
        await self._meter(admitted, len(items), sign=1)
        try:
            results = await self._answer(admitted.caller.org_id, family, items)
        except Unavailable:
            await self._meter(admitted, len(items), sign=-1)
            raise
        failed = sum(1 for r in results if r.status != 200)
        response = framework_pb2.SyncBatchResponse(
            data=results,
            meta=framework_pb2.Meta(
                batch=framework_pb2.BatchSummary(
                    total=len(results), succeeded=len(results) - failed, failed=failed
                )
            ),
        )
        return Reply(response, status=207 if failed else 200)

    async def _answer(
        self, org_id: str, family: str, items: list[Any]
    ) -> list[framework_pb2.ItemResult]:
        """Objects go to the processor; anything else is answered here as invalid_item."""
        objects = [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]
        results: list[framework_pb2.ItemResult] = [
            framework_pb2.ItemResult(
                status=400,
                error=framework_pb2.ItemError(
                    code="invalid_item", message="item must be an object"
                ),
            )
            for _ in items
        ]
        if objects:
            request = executor_pb2.ExecuteItemsRequest(
                family=family, org_id=org_id, items=[_struct(item) for _, item in objects]
            )
            try:
                # Traced (when tracing is on) in a CLIENT span the processor continues.
                with tracing.calling(EXECUTE_ITEMS) as metadata:
                    answered = await self._executor.ExecuteItems(
                        request, timeout=self._timeout_s, metadata=metadata or None
                    )
            except grpc.aio.AioRpcError as error:
                raise Unavailable("the processor is unavailable; retry later") from error
            for (index, _), result in zip(objects, answered.results, strict=True):
                results[index] = result
        return results

    async def _meter(self, admitted: Admitted, units: int, *, sign: int) -> None:
        """Meter before running (429 when over quota); un-meter if the run cannot happen."""
        now = self._clock.now()
        async with self._database.transaction() as session:
            if sign > 0:
                await meter_or_refuse(session, admitted.caller.org_id, admitted.plan, units, now)
            else:
                await billing.meter(session, org_id=admitted.caller.org_id, units=-units, now=now)


def _struct(item: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(item)
    return value
