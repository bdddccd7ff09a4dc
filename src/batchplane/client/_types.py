"""The JSON bodies the strict routes take and answer, as typed mappings, and the results
of the batch helpers.

Routes whose request is a `google.api.HttpBody` (scrape, enrichment operations, radars)
take these mappings and send them as JSON bytes; their JSON answers are parsed into the
answer types below. Nothing is validated client-side: intake validates strictly and
answers 400/422 with the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from batchplane.api.batches.v1 import batches_pb2

Family = Literal["lookup", "scrape", "radar"]
TERMINAL_STATUSES = frozenset({"finished", "cancelled"})


# Bulk lookup (seed 000); sent as the typed fields of CreateBulkLookupRequest.
class BulkLookupBody(TypedDict):
    domains: list[str]
    recompute: NotRequired[bool]
    max_age: NotRequired[int]
    list_id: NotRequired[int]
    webhook_url: NotRequired[str]


# Scrape batches (seed 004).
DateFilter = TypedDict(
    "DateFilter", {"field": str, "from": NotRequired[str], "to": NotRequired[str]}
)


class ScrapeOptions(TypedDict, total=False):
    max_items_per_url: int
    max_total_items: int
    parallel_jobs: int
    timeout_per_url: int
    date_filter: DateFilter | None
    llm_mode: Literal["structured"]


class ScrapeBatchBody(TypedDict):
    urls: list[str]
    schema: Mapping[str, Any]
    organization_id: NotRequired[str]
    options: NotRequired[ScrapeOptions]
    webhook_url: NotRequired[str]


# Enrichment operations (seed 002, camelCase).
class EnrichmentTask(TypedDict):
    entityId: str
    field: str
    entityType: NotRequired[Literal["company", "person"]]


class EnrichmentTriggerBody(TypedDict):
    tasks: list[EnrichmentTask]
    webhook_url: NotRequired[str]


class EnrichmentQueryBody(TypedDict):
    tasks: list[EnrichmentTask]


class EnrichmentRecord(TypedDict):
    id: str
    createdAt: str
    updatedAt: str
    entityId: str
    entityType: str
    field: str
    status: str
    error: str | None
    dataFound: bool | None
    createdBy: str | None
    orgId: str
    globalEnrichmentId: str | None
    creditTransactionId: str | None
    data: NotRequired[Any]


# Radars (seed 003).
class CompanyRadarBody(TypedDict):
    domain: str
    radar_type: Literal["technology_changes", "website_changes"]
    filters: NotRequired[Mapping[str, Any]]


class ContactRadarBody(TypedDict):
    profile_url: str
    radar_type: Literal["profile_changes"]
    domain: str


class IndustryRadarBody(TypedDict):
    radar_type: Literal["industry_mentions", "industry_job_openings", "industry_news"]
    keyword: NotRequired[str]


class BulkRadarsBody(TypedDict):
    webhook_url: str
    # Each item: a single-create body plus an optional `custom_fields` object.
    radars: Sequence[Mapping[str, Any]]


class Radar(TypedDict):
    id: str
    type: str
    radar_type: str
    status: str
    created_at: str
    domain: NotRequired[str | None]
    profile_url: NotRequired[str | None]
    keyword: NotRequired[str | None]
    filters: NotRequired[dict[str, Any]]


class RadarPage(TypedDict):
    radars: list[Radar]
    next_offset: int | None


class BulkRadarsSummary(TypedDict):
    total: int
    queued: int


class BulkRadarsAccepted(TypedDict):
    bulk_id: str
    summary: BulkRadarsSummary


class BulkRadarsStatus(TypedDict):
    bulk_id: str
    status: Literal["processing", "completed"]
    # In-flight items as {item_index, status: "processing", custom_fields}; ended ones
    # as their radar_created / radar_failure payload.
    radars: list[dict[str, Any]]


# Results of the batch helpers.


@dataclass(frozen=True)
class ItemOutcome:
    """One terminal item of a batch, as a watch reports it."""

    index: int
    # "succeeded", "failed" or "cancelled".
    status: str
    # Machine code when failed (e.g. `dns_failed`, `cancelled`); None otherwise.
    error_code: str | None
    # The item's result, parsed from JSON (family specific); None unless succeeded.
    result: Any

    @classmethod
    def from_message(cls, item: batches_pb2.ItemOutcome) -> ItemOutcome:
        return cls(
            index=item.item_index,
            status=item.status,
            error_code=item.error_code or None,
            result=json.loads(item.result_json) if item.result_json else None,
        )


@dataclass(frozen=True)
class WatchUpdate:
    """One message of a watch: the batch as of now, and the item that just ended."""

    # Pass to `watch(…, cursor=…)` to resume after this update.
    cursor: str
    batch: batches_pb2.Batch
    # None for the first update of a watch (a snapshot) and for status changes.
    item: ItemOutcome | None

    @property
    def terminal(self) -> bool:
        return self.batch.status in TERMINAL_STATUSES

    @classmethod
    def from_message(cls, update: batches_pb2.BatchUpdate) -> WatchUpdate:
        item = ItemOutcome.from_message(update.item) if update.HasField("item") else None
        return cls(cursor=update.cursor, batch=update.batch, item=item)


@dataclass(frozen=True)
class BatchResult:
    """A batch that reached `finished` or `cancelled`, with every item's outcome."""

    batch: batches_pb2.Batch
    # One per item, by index.
    items: list[ItemOutcome]

    @property
    def succeeded(self) -> list[ItemOutcome]:
        return [item for item in self.items if item.status == "succeeded"]

    @property
    def failed(self) -> list[ItemOutcome]:
        return [item for item in self.items if item.status == "failed"]
