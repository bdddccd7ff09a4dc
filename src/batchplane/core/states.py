"""Batch and item states as stored and printed (lower case, as the seeds print them)."""

from __future__ import annotations

from enum import StrEnum


class BatchState(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FINISHED = "finished"


class ItemState(StrEnum):
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL_ITEM_STATES = frozenset({ItemState.SUCCEEDED, ItemState.FAILED})
