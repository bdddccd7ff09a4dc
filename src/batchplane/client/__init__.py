"""A typed async Python client of batchplane's gRPC API (intake).

    from batchplane.client import BatchplaneClient

    async with BatchplaneClient("127.0.0.1:50051", token=TOKEN) as client:
        result = await client.submit_and_wait("lookup", {"domains": ["example.com"]})
        for item in result.items:
            print(item.index, item.status, item.error_code)

* `client.lookups`, `.scrapes`, `.enrichments`, `.radars`, `.framework`, `.batches` and
  `.webhooks` wrap one service each. Typed requests are keyword arguments; the strict
  JSON routes (scrape, enrichment operations, radars) take typed mappings and answer
  parsed JSON.
* Every call that creates or runs a batch sends an `Idempotency-Key` (yours, or one
  generated per call and reused by its retries).
* UNAVAILABLE and the in-flight idempotency conflict are retried with exponential
  backoff and jitter (`RetryPolicy`); every other failure raises at once, as one of the
  exceptions drawn in `batchplane.client._exceptions`.
* `watch` follows a batch and resumes a dropped stream from its last cursor;
  `submit_and_wait` submits a batch and watches it to its end.

Only `grpcio`, `protobuf` and the generated `batchplane.api` stubs are imported: no
settings, database or broker.
"""

from batchplane.client._client import DEFAULT_TARGET, BatchplaneClient
from batchplane.client._exceptions import (
    APIError,
    AuthenticationError,
    BadRequest,
    ClientError,
    Conflict,
    DeadlineExceeded,
    IdempotencyConflict,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnprocessableEntity,
)
from batchplane.client._services import batch_number
from batchplane.client._transport import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_REPLAYED_HEADER,
    RetryPolicy,
)
from batchplane.client._types import (
    BatchResult,
    BulkLookupBody,
    BulkRadarsAccepted,
    BulkRadarsBody,
    BulkRadarsStatus,
    CompanyRadarBody,
    ContactRadarBody,
    EnrichmentQueryBody,
    EnrichmentRecord,
    EnrichmentTask,
    EnrichmentTriggerBody,
    IndustryRadarBody,
    ItemOutcome,
    Radar,
    RadarPage,
    ScrapeBatchBody,
    ScrapeOptions,
    WatchUpdate,
)

__all__ = [
    "DEFAULT_TARGET",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENCY_REPLAYED_HEADER",
    "APIError",
    "AuthenticationError",
    "BadRequest",
    "BatchResult",
    "BatchplaneClient",
    "BulkLookupBody",
    "BulkRadarsAccepted",
    "BulkRadarsBody",
    "BulkRadarsStatus",
    "ClientError",
    "CompanyRadarBody",
    "Conflict",
    "ContactRadarBody",
    "DeadlineExceeded",
    "EnrichmentQueryBody",
    "EnrichmentRecord",
    "EnrichmentTask",
    "EnrichmentTriggerBody",
    "IdempotencyConflict",
    "IndustryRadarBody",
    "ItemOutcome",
    "NotFound",
    "PaymentRequired",
    "PermissionDenied",
    "Radar",
    "RadarPage",
    "RateLimited",
    "RetryPolicy",
    "ScrapeBatchBody",
    "ScrapeOptions",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "UnprocessableEntity",
    "WatchUpdate",
    "batch_number",
]
