"""gRPC servicer of RadarService (seed 003): single create, read, list, deactivate."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2

from batchplane.api.radars.v1 import radars_pb2, radars_pb2_grpc
from batchplane.core.clock import Clock
from batchplane.core.errors import (
    BatchplaneError,
    Conflict,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    RateLimited,
)
from batchplane.core.json_body import parse_object
from batchplane.core.scopes import RADARS_READ, RADARS_WRITE
from batchplane.db import radars
from batchplane.db.engine import Database
from batchplane.intake.guard import Guard
from batchplane.intake.idempotency import IdempotencyGate, request_fingerprint
from batchplane.intake.radar_bulk import BulkRadarIntake
from batchplane.intake.wire import Context, call_metadata, json_body
from batchplane.intake.wire_errors import send_http_status
from batchplane.radars import failures
from batchplane.radars.creation import RadarConflict, RadarUnpaid, create_radar, radar_json
from batchplane.radars.failures import failure_body
from batchplane.radars.specs import (
    COMPANY,
    CONTACT,
    INDUSTRY,
    FieldError,
    RadarInvalid,
    parse_radar,
)

SERVICE_NAME = radars_pb2.DESCRIPTOR.services_by_name["RadarService"].full_name


def radar_error_body(error: BatchplaneError) -> dict[str, Any]:
    """Seed 003's failure shape, identical for single create and `radar_failure`."""
    body = failure_body(
        error.http_status,
        error.message,
        conflicting_radar_id=error.extra.get("conflicting_radar_id"),
    )
    body["errors"] = error.extra.get("errors", [])
    if "reason" in error.extra:
        body["reason"] = error.extra["reason"]
    return body


def invalid(errors: list[FieldError]) -> InvalidRequest:
    return InvalidRequest(
        failures.VALIDATION,
        code="validation_error",
        http_status=400,
        extra={"errors": [e.as_json() for e in errors]},
    )


class RadarsApi(radars_pb2_grpc.RadarServiceServicer):
    def __init__(
        self,
        database: Database,
        guard: Guard,
        *,
        clock: Clock,
        credits_per_radar: int,
        extra_suffixes: frozenset[str],
        gate: IdempotencyGate,
        bulk: BulkRadarIntake,
    ) -> None:
        self._database = database
        self._guard = guard
        self._clock = clock
        self._credits = credits_per_radar
        self._extra_suffixes = extra_suffixes
        self._gate = gate
        self._bulk = bulk

    async def CreateBulkRadars(
        self, request: radars_pb2.RadarRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        try:
            admitted = await self._guard.admit(
                call_metadata(context), scope=RADARS_WRITE, bulk=True
            )
        except RateLimited as limited:
            # Seed 003: this endpoint's 429 always says which bucket: the minute one.
            limited.extra["reason"] = "minute"
            raise
        raw = request.http_body.data
        return await self._gate.run(
            context,
            admitted,
            fingerprint=request_fingerprint("radars-bulk", request, raw),
            response_type=httpbody_pb2.HttpBody,
            produce=lambda: self._bulk.submit(admitted, raw),
        )

    async def GetBulkRadars(
        self, request: radars_pb2.BulkId, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=RADARS_READ)
        status = await self._bulk.status(admitted.caller.org_id, request.bulk_id)
        if status is None:
            raise NotFound(f"bulk {request.bulk_id} not found")
        await send_http_status(context, 200, admitted.headers)
        return json_body(status)

    async def CreateCompanyRadar(
        self, request: radars_pb2.RadarRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        return await self._create(COMPANY, request, context)

    async def CreateContactRadar(
        self, request: radars_pb2.RadarRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        return await self._create(CONTACT, request, context)

    async def CreateIndustryRadar(
        self, request: radars_pb2.RadarRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        return await self._create(INDUSTRY, request, context)

    async def _create(
        self, kind: str, request: radars_pb2.RadarRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=RADARS_WRITE)
        try:
            body = parse_object(request.http_body.data)
        except InvalidRequest as error:
            raise invalid([FieldError("body", error.message)]) from None
        try:
            spec = parse_radar(kind, body, extra_suffixes=self._extra_suffixes)
            radar = await create_radar(
                self._database,
                org_id=admitted.caller.org_id,
                spec=spec,
                credits=self._credits,
                now=self._clock.now(),
            )
        except RadarInvalid as error:
            raise invalid(error.errors) from None
        except RadarConflict as conflict:
            raise Conflict(
                failures.CONFLICT,
                code="radar_conflict",
                extra={
                    "errors": [e.as_json() for e in conflict.errors],
                    "conflicting_radar_id": conflict.conflicting_radar_id,
                },
            ) from None
        except RadarUnpaid:
            raise PaymentRequired(failures.UNPAID, code="insufficient_balance") from None
        await send_http_status(context, 201, admitted.headers)
        return json_body(radar_json(radar))

    async def GetRadar(
        self, request: radars_pb2.RadarId, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=RADARS_READ)
        async with self._database.transaction() as session:
            radar = await radars.get(session, org_id=admitted.caller.org_id, radar_id=request.id)
        if radar is None:
            raise NotFound(f"radar {request.id} not found")
        await send_http_status(context, 200, admitted.headers)
        return json_body(radar_json(radar))

    async def ListRadars(
        self, request: radars_pb2.ListRadarsRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=RADARS_READ)
        limit = min(max(request.limit or 50, 1), 200)
        offset = max(request.offset, 0)
        async with self._database.transaction() as session:
            found = await radars.list_for_org(
                session, org_id=admitted.caller.org_id, limit=limit, offset=offset
            )
        await send_http_status(context, 200, admitted.headers)
        next_offset = offset + limit if len(found) == limit else None
        return json_body({"radars": [radar_json(r) for r in found], "next_offset": next_offset})

    async def DeactivateRadar(
        self, request: radars_pb2.RadarId, context: Context
    ) -> httpbody_pb2.HttpBody:
        admitted = await self._guard.admit(call_metadata(context), scope=RADARS_WRITE)
        org_id = admitted.caller.org_id
        async with self._database.transaction() as session:
            await radars.deactivate(
                session, org_id=org_id, radar_id=request.id, now=self._clock.now()
            )
            radar = await radars.get(session, org_id=org_id, radar_id=request.id)
        if radar is None:
            raise NotFound(f"radar {request.id} not found")
        await send_http_status(context, 200, admitted.headers)
        return json_body(radar_json(radar))
