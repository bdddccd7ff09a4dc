"""Webhook bodies for batch events (contract section 4).

Every async batch family gets the same two messages, modelled on seed 003's radar
events: one per item when it ends, then exactly one when the batch is complete,
which repeats every item's payload. `completed_at` and its deprecated alias
`discovered_at` are always equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from batchplane.core.clock import rfc3339
from batchplane.core.states import ItemState

ITEM_COMPLETED = "item_completed"
BATCH_COMPLETED = "batch_completed"


def item_payload(
    *,
    batch_id: int,
    family: str,
    item_index: int,
    succeeded: bool,
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
        "status": ItemState.SUCCEEDED if succeeded else ItemState.FAILED,
        "error": error_code or None,
        "data": result if succeeded else None,
        "completed_at": when,
        "discovered_at": when,
    }


def completion_payload(
    *,
    batch_id: int,
    family: str,
    succeeded: int,
    failed: int,
    items: list[dict[str, Any]],
    completed_at: datetime,
) -> dict[str, Any]:
    when = rfc3339(completed_at)
    return {
        "event": BATCH_COMPLETED,
        "batch_id": batch_id,
        "family": family,
        "counts": {"total": succeeded + failed, "succeeded": succeeded, "failed": failed},
        "items": items,
        "completed_at": when,
        "discovered_at": when,
    }
