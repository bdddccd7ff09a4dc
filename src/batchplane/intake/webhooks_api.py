"""gRPC servicer of WebhooksService: the delivery log and redelivery."""

from __future__ import annotations

from google.protobuf import struct_pb2

from batchplane.api.webhooks.v1 import webhooks_pb2, webhooks_pb2_grpc
from batchplane.core.clock import Clock, rfc3339
from batchplane.core.errors import NotFound
from batchplane.db import webhooks
from batchplane.db.engine import Database
from batchplane.db.models import WebhookAttempt, WebhookDelivery
from batchplane.intake.guard import Guard
from batchplane.intake.wire import NULL, Context, call_metadata
from batchplane.intake.wire_errors import send_http_status


class WebhooksApi(webhooks_pb2_grpc.WebhooksServiceServicer):
    def __init__(self, database: Database, guard: Guard, *, clock: Clock) -> None:
        self._database = database
        self._guard = guard
        self._clock = clock

    async def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: Context
    ) -> webhooks_pb2.DeliveryList:
        admitted = await self._guard.admit(call_metadata(context), scope=None)
        limit = min(max(request.limit or 50, 1), 500)
        async with self._database.transaction() as session:
            found = await webhooks.list_deliveries(
                session,
                org_id=admitted.caller.org_id,
                limit=limit,
                batch_id=request.batch_id or None,
            )
        await send_http_status(context, 200, admitted.headers)
        return webhooks_pb2.DeliveryList(deliveries=[_delivery(d, a) for d, a in found])

    async def RedeliverDelivery(
        self, request: webhooks_pb2.RedeliverRequest, context: Context
    ) -> webhooks_pb2.Delivery:
        admitted = await self._guard.admit(call_metadata(context), scope=None)
        org_id = admitted.caller.org_id
        async with self._database.transaction() as session:
            if not await webhooks.redeliver(
                session, org_id=org_id, delivery_id=request.delivery_id, now=self._clock.now()
            ):
                raise NotFound(f"delivery {request.delivery_id} not found")
            found = await webhooks.get_delivery(
                session, org_id=org_id, delivery_id=request.delivery_id
            )
        assert found is not None
        await send_http_status(context, 202, admitted.headers)
        return _delivery(*found)


def _delivery(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> webhooks_pb2.Delivery:
    return webhooks_pb2.Delivery(
        id=delivery.id,
        batch_id=delivery.batch_id,
        event=delivery.event_type,
        url=delivery.url,
        status=delivery.status,
        attempts=delivery.attempts,
        created_at=rfc3339(delivery.created_at),
        attempt_log=[_attempt(a) for a in attempts],
    )


def _attempt(attempt: WebhookAttempt) -> webhooks_pb2.DeliveryAttempt:
    return webhooks_pb2.DeliveryAttempt(
        attempted_at=rfc3339(attempt.attempted_at),
        verdict=attempt.verdict,
        status_code=NULL
        if attempt.status_code is None
        else struct_pb2.Value(number_value=attempt.status_code),
        latency_ms=attempt.latency_ms,
        response_snippet=attempt.response_snippet,
        error=NULL if attempt.error is None else struct_pb2.Value(string_value=attempt.error),
    )
