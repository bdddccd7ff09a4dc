"""Batch and item states as stored and printed (lower case, as the seeds print them)."""

from __future__ import annotations

from enum import StrEnum


class BatchState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FINISHED = "finished"
    # Cancelled, and every item terminal (the unstarted ones `cancelled`).
    CANCELLED = "cancelled"


class ItemState(StrEnum):
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The batch was cancelled before the item was claimed by a processor.
    CANCELLED = "cancelled"


TERMINAL_ITEM_STATES = frozenset({ItemState.SUCCEEDED, ItemState.FAILED, ItemState.CANCELLED})
TERMINAL_BATCH_STATES = frozenset({BatchState.FINISHED, BatchState.CANCELLED})
