"""Bulk radar creation (seed 003): the per-item payloads that webhooks and polling share.

Each item's payload is built once, when the item ends, and stored with it; the
`radar_created` / `radar_failure` webhook, the `bulk_completed` list and the
polling response all repeat that same object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from batchplane.core.clock import rfc3339
from batchplane.core.states import ItemState

RADAR_CREATED = "radar_created"
RADAR_FAILURE = "radar_failure"
BULK_COMPLETED = "bulk_completed"


def bulk_public_id(batch_id: int) -> str:
    return f"bulk_{batch_id}"


def created_payload(
    *, bulk_id: str, item_index: int, custom_fields: Any, data: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "event": RADAR_CREATED,
        "bulk_id": bulk_id,
        "item_index": item_index,
        "custom_fields": custom_fields,
        "data": data,
        "completed_at": rfc3339(at),
        "discovered_at": rfc3339(at),
    }


def failure_payload(
    *,
    bulk_id: str,
    item_index: int,
    custom_fields: Any,
    failure: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """`failure` is the single-create error body, spread into the envelope."""
    return {
        "event": RADAR_FAILURE,
        "bulk_id": bulk_id,
        "item_index": item_index,
        "custom_fields": custom_fields,
        **failure,
        "completed_at": rfc3339(at),
        "discovered_at": rfc3339(at),
    }


def completed_payload(
    *, bulk_id: str, created: int, failed: int, radars: list[dict[str, Any]], at: datetime
) -> dict[str, Any]:
    return {
        "event": BULK_COMPLETED,
        "bulk_id": bulk_id,
        "created": created,
        "failed": failed,
        "radars": radars,
        "completed_at": rfc3339(at),
        "discovered_at": rfc3339(at),
    }


def unfinished_payload(item_index: int, status: str, raw_input: str) -> dict[str, Any] | None:
    """A bulk item without a radar payload: still `processing`, or `cancelled` with its
    batch; None for an item that has its payload."""
    if status not in (ItemState.QUEUED, ItemState.CANCELLED):
        return None
    custom = orjson.loads(raw_input)
    return {
        "item_index": item_index,
        "status": "processing" if status == ItemState.QUEUED else "cancelled",
        "custom_fields": custom.get("custom_fields") if isinstance(custom, dict) else None,
    }
