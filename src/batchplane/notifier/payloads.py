"""Webhook bodies for batch events (contract section 4).

Every async batch family gets the same two messages, modelled on seed 003's radar
events: one per item when it ends, then exactly one when the batch is complete,
which repeats every item's payload. `completed_at` and its deprecated alias
`discovered_at` are always equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchplane.api.common.v1 import batch_pb2
from batchplane.core.clock import rfc3339
from batchplane.core.states import ItemState

ITEM_COMPLETED = "item_completed"
BATCH_COMPLETED = "batch_completed"


def item_payload(
    *,
    batch_id: int,
    family: str,
    item_index: int,
    status: str,
    error_code: str | None,
    result: dict[str, Any] | None,
    completed_at: datetime,
) -> dict[str, Any]:
    when = rfc3339(completed_at)
    return {
        "event": ITEM_COMPLETED,
        "batch_id": batch_id,
        "family": family,
        "item_index": item_index,
        "status": status,
        "error": error_code or None,
        "data": result if status == ItemState.SUCCEEDED else None,
        "completed_at": when,
        "discovered_at": when,
    }


def completion_payload(
    *,
    batch_id: int,
    family: str,
    status: str,
    progress: batch_pb2.BatchProgress,
    items: list[dict[str, Any]],
    completed_at: datetime,
) -> dict[str, Any]:
    """`status` is `finished`, or `cancelled` for a cancelled batch."""
    when = rfc3339(completed_at)
    return {
        "event": BATCH_COMPLETED,
        "batch_id": batch_id,
        "family": family,
        "status": status,
        "counts": {
            "total": progress.requested,
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "cancelled": progress.cancelled,
        },
        "items": items,
        "completed_at": when,
        "discovered_at": when,
    }
