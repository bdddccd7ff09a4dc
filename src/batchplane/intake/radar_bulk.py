"""Accepting bulk radar submissions and answering their polling route."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from google.api import httpbody_pb2

from batchplane.core.clock import Clock
from batchplane.core.errors import InvalidRequest
from batchplane.core.json_body import parse_object
from batchplane.core.settings import KafkaSettings
from batchplane.core.states import TERMINAL_BATCH_STATES
from batchplane.db import batches
from batchplane.db.engine import Database
from batchplane.intake.acceptance import accept_batch
from batchplane.intake.guard import Admitted
from batchplane.intake.idempotency import Reply
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.radars.bulk import bulk_public_id, unfinished_payload

FAMILY = "radar"
_BULK_ID = re.compile(r"^bulk_([1-9][0-9]{0,9})$")


def envelope_error(message: str) -> InvalidRequest:
    """Seed 003: an invalid envelope (`webhook_url`, `radars[]`) is a 400."""
    return InvalidRequest(message, code="invalid_envelope", http_status=400)


class BulkRadarIntake:
    def __init__(
        self,
        database: Database,
        *,
        kafka: KafkaSettings,
        clock: Clock,
        webhook_urls: WebhookUrlPolicy,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._kafka = kafka
        self._clock = clock
        self._webhook_urls = webhook_urls
        self._on_commit = on_commit

    async def submit(self, admitted: Admitted, raw: bytes) -> Reply[httpbody_pb2.HttpBody]:
        webhook_url, items = self._envelope(raw, admitted.plan.max_batch_size)
        async with self._database.transaction() as session:
            accepted = await accept_batch(
                session,
                caller=admitted.caller,
                plan=admitted.plan,
                family=FAMILY,
                inputs=[orjson.dumps(item).decode() for item in items],
                params={"webhook_url": webhook_url},
                unit_credits=0,  # each radar is charged when it is created
                kafka=self._kafka,
                now=self._clock.now(),
            )
        self._on_commit()
        body = {
            "bulk_id": bulk_public_id(accepted.batch.id),
            "summary": {"total": len(items), "queued": len(items)},
        }
        return Reply(
            httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(body)),
            status=202,
        )

    def _envelope(self, raw: bytes, cap: int) -> tuple[str, list[Any]]:
        try:
            body = parse_object(raw)
        except InvalidRequest as error:
            raise envelope_error(error.message) from None
        unknown = sorted(set(body) - {"webhook_url", "radars"})
        if unknown:
            raise envelope_error(f"unknown field: {unknown[0]}")
        if body.get("webhook_url") is None:
            raise envelope_error("webhook_url is required")
        try:
            webhook_url = self._webhook_urls.check(body["webhook_url"])
        except InvalidRequest as error:
            raise envelope_error(error.message) from None
        items = body.get("radars")
        if not isinstance(items, list) or not items:
            raise envelope_error("radars must be a non-empty array")
        if len(items) > cap:
            raise envelope_error(f"radars must have at most {cap} items on this plan")
        assert webhook_url is not None
        return webhook_url, items

    async def status(self, org_id: str, bulk_id: str) -> dict[str, Any] | None:
        match = _BULK_ID.match(bulk_id)
        if match is None:
            return None
        async with self._database.transaction() as session:
            batch = await batches.get_batch(session, batch_id=int(match.group(1)), org_id=org_id)
            if batch is None or batch.family != FAMILY:
                return None
            items = await batches.list_items(session, batch_id=batch.id)
        radars = [
            unfinished_payload(item.item_index, item.status, item.input)
            or (item.result or {}).get("payload", {})
            for item in items
        ]
        done = batch.status in TERMINAL_BATCH_STATES
        return {
            "bulk_id": bulk_id,
            "status": "completed" if done else "processing",
            "radars": radars,
        }
