"""One typed wrapper per intake service.

Creates and submits (every call that creates or runs a batch) send an `Idempotency-Key`:
the caller's, or one generated per logical call and reused by each of its retries, so a
retry after a lost answer replays the first answer instead of charging twice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import grpc
from google.api import httpbody_pb2
from google.protobuf import struct_pb2

from batchplane.api.batches.v1 import batches_pb2, batches_pb2_grpc
from batchplane.api.enrichment.v1 import enrichment_pb2, enrichment_pb2_grpc
from batchplane.api.framework.v1 import framework_pb2, framework_pb2_grpc
from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc
from batchplane.api.radars.v1 import radars_pb2, radars_pb2_grpc
from batchplane.api.scrape.v1 import scrape_pb2, scrape_pb2_grpc
from batchplane.api.webhooks.v1 import webhooks_pb2, webhooks_pb2_grpc
from batchplane.client._exceptions import ClientError, ServiceUnavailable, translate
from batchplane.client._transport import (
    DEFAULT_TIMEOUT,
    Deadline,
    Timeout,
    Transport,
    new_idempotency_key,
)
from batchplane.client._types import (
    BatchResult,
    BulkRadarsAccepted,
    BulkRadarsBody,
    BulkRadarsStatus,
    CompanyRadarBody,
    ContactRadarBody,
    EnrichmentQueryBody,
    EnrichmentRecord,
    EnrichmentTriggerBody,
    IndustryRadarBody,
    ItemOutcome,
    Radar,
    RadarPage,
    ScrapeBatchBody,
    WatchUpdate,
)


def batch_number(batch_id: int | str) -> int:
    """The numeric id behind `42`, `"42"`, `"batch_42"` (scrape) or `"bulk_42"` (radars)."""
    if isinstance(batch_id, int):
        return batch_id
    for prefix in ("batch_", "bulk_"):
        if batch_id.startswith(prefix):
            return int(batch_id.removeprefix(prefix))
    return int(batch_id)


def json_body(body: Mapping[str, Any]) -> httpbody_pb2.HttpBody:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_plain)
    return httpbody_pb2.HttpBody(content_type="application/json", data=data.encode())


def parse_json(body: httpbody_pb2.HttpBody) -> Any:
    return json.loads(body.data) if body.data else None


def _plain(value: Any) -> Any:
    """JSON for the mappings and sequences json.dumps does not take as they are."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _struct(item: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(item, default=_plain)))
    return struct


class BulkLookups:
    """`BulkLookupService`: bulk domain lookups (seed 000). Scope `lookup.write`."""

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = lookup_pb2_grpc.BulkLookupServiceStub(channel)
        self._t = transport

    async def create(
        self,
        domains: Sequence[str],
        *,
        recompute: bool = False,
        max_age: int | None = None,
        list_id: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> lookup_pb2.BulkLookupBatch:
        """Queues 1 to 100 domains, one credit each (402 when the balance cannot pay)."""
        request = lookup_pb2.CreateBulkLookupRequest(
            domains=list(domains),
            recompute=recompute,
            max_age=max_age,
            list_id=list_id,
            webhook_url=webhook_url,
        )
        return await self._t.unary(
            self._stub.CreateBulkLookup,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )

    async def get(
        self, batch_id: int, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> lookup_pb2.BulkLookupBatchWithResults:
        request = lookup_pb2.GetBulkLookupRequest(id=batch_id)
        return await self._t.unary(self._stub.GetBulkLookup, request, timeout_s=timeout_s)

    async def get_list(
        self, list_id: int, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> lookup_pb2.DomainList:
        request = lookup_pb2.GetListRequest(list_id=list_id)
        return await self._t.unary(self._stub.GetList, request, timeout_s=timeout_s)


class Scrapes:
    """`ScrapeService`: scrape batches (seed 004). Scopes `scrape.write` / `scrape.read`."""

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = scrape_pb2_grpc.ScrapeServiceStub(channel)
        self._t = transport

    async def create(
        self,
        body: ScrapeBatchBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> scrape_pb2.ScrapeBatch:
        """Accepts 1 to 50 URLs, one credit each; jobs start `pending`."""
        request = scrape_pb2.CreateScrapeBatchRequest(http_body=json_body(body))
        return await self._t.unary(
            self._stub.CreateScrapeBatch,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )

    async def get(
        self, batch_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> scrape_pb2.ScrapeBatch:
        request = scrape_pb2.GetScrapeBatchRequest(batch_id=batch_id)
        return await self._t.unary(self._stub.GetScrapeBatch, request, timeout_s=timeout_s)

    async def get_job(
        self, job_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> scrape_pb2.ScrapeJobDetail:
        request = scrape_pb2.GetScrapeJobRequest(job_id=job_id)
        return await self._t.unary(self._stub.GetScrapeJob, request, timeout_s=timeout_s)


class EnrichmentOperations:
    """`EnrichmentOperationsService` (seed 002): JSON both ways, camelCase."""

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = enrichment_pb2_grpc.EnrichmentOperationsServiceStub(channel)
        self._t = transport

    async def trigger(
        self,
        body: EnrichmentTriggerBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> list[EnrichmentRecord]:
        """Starts 1 to 200 tasks; a field enriched recently returns its record, free."""
        request = enrichment_pb2.EnrichmentTasksRequest(http_body=json_body(body))
        answer = await self._t.unary(
            self._stub.TriggerEnrichments,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return cast(list[EnrichmentRecord], parse_json(answer))

    async def query(
        self, body: EnrichmentQueryBody, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> list[EnrichmentRecord]:
        """The latest record of each task's (entity, field); tasks without one are left out."""
        request = enrichment_pb2.EnrichmentTasksRequest(http_body=json_body(body))
        answer = await self._t.unary(self._stub.QueryEnrichments, request, timeout_s=timeout_s)
        return cast(list[EnrichmentRecord], parse_json(answer))

    async def get(
        self, record_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> EnrichmentRecord:
        request = enrichment_pb2.GetEnrichmentRequest(id=record_id)
        answer = await self._t.unary(self._stub.GetEnrichment, request, timeout_s=timeout_s)
        return cast(EnrichmentRecord, parse_json(answer))


class Radars:
    """`RadarService` (seed 003): JSON both ways. Scopes `radars.write` / `radars.read`.

    Single creates are not idempotency-keyed by the service (the key is sent and
    ignored); a repeated create of the same configuration is a `Conflict` whose body
    names `conflicting_radar_id`.
    """

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = radars_pb2_grpc.RadarServiceStub(channel)
        self._t = transport

    async def create_company(
        self,
        body: CompanyRadarBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> Radar:
        return await self._create(self._stub.CreateCompanyRadar, body, idempotency_key, timeout_s)

    async def create_contact(
        self,
        body: ContactRadarBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> Radar:
        return await self._create(self._stub.CreateContactRadar, body, idempotency_key, timeout_s)

    async def create_industry(
        self,
        body: IndustryRadarBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> Radar:
        return await self._create(self._stub.CreateIndustryRadar, body, idempotency_key, timeout_s)

    async def create_bulk(
        self,
        body: BulkRadarsBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> BulkRadarsAccepted:
        """Queues the radars; each is created (and charged) asynchronously."""
        request = radars_pb2.RadarRequest(http_body=json_body(body))
        answer = await self._t.unary(
            self._stub.CreateBulkRadars,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return cast(BulkRadarsAccepted, parse_json(answer))

    async def get_bulk(
        self, bulk_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> BulkRadarsStatus:
        request = radars_pb2.BulkId(bulk_id=bulk_id)
        answer = await self._t.unary(self._stub.GetBulkRadars, request, timeout_s=timeout_s)
        return cast(BulkRadarsStatus, parse_json(answer))

    async def get(self, radar_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT) -> Radar:
        request = radars_pb2.RadarId(id=radar_id)
        answer = await self._t.unary(self._stub.GetRadar, request, timeout_s=timeout_s)
        return cast(Radar, parse_json(answer))

    async def list(
        self, *, limit: int = 50, offset: int = 0, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> RadarPage:
        request = radars_pb2.ListRadarsRequest(limit=limit, offset=offset)
        answer = await self._t.unary(self._stub.ListRadars, request, timeout_s=timeout_s)
        return cast(RadarPage, parse_json(answer))

    async def deactivate(self, radar_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT) -> Radar:
        request = radars_pb2.RadarId(id=radar_id)
        answer = await self._t.unary(self._stub.DeactivateRadar, request, timeout_s=timeout_s)
        return cast(Radar, parse_json(answer))

    async def _create(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[radars_pb2.RadarRequest, httpbody_pb2.HttpBody],
        body: Mapping[str, Any],
        idempotency_key: str | None,
        timeout_s: Timeout,
    ) -> Radar:
        request = radars_pb2.RadarRequest(http_body=json_body(body))
        answer = await self._t.unary(
            method,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return cast(Radar, parse_json(answer))


class BatchFramework:
    """`BatchFrameworkService` (seed 001): synchronous batches, answered item by item.

    Items are mappings (`{"domain"}`, `{"domain", "types"?, "since"?}`,
    `{"entity_id", "field"}`), sent as the typed `requests` field; an item's failure is
    in its `ItemResult`, not an exception.
    """

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = framework_pb2_grpc.BatchFrameworkServiceStub(channel)
        self._t = transport

    async def intelligence(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> framework_pb2.SyncBatchResponse:
        return await self._run(self._stub.IntelligenceBatch, requests, idempotency_key, timeout_s)

    async def signals(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> framework_pb2.SyncBatchResponse:
        return await self._run(self._stub.SignalsBatch, requests, idempotency_key, timeout_s)

    async def enrichment(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> framework_pb2.SyncBatchResponse:
        return await self._run(self._stub.EnrichmentBatch, requests, idempotency_key, timeout_s)

    async def usage(self, *, timeout_s: Timeout = DEFAULT_TIMEOUT) -> framework_pb2.Usage:
        request = framework_pb2.GetUsageRequest()
        return await self._t.unary(self._stub.GetUsage, request, timeout_s=timeout_s)

    async def _run(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[
            framework_pb2.SyncBatchRequest, framework_pb2.SyncBatchResponse
        ],
        requests: Sequence[Mapping[str, Any]],
        idempotency_key: str | None,
        timeout_s: Timeout,
    ) -> framework_pb2.SyncBatchResponse:
        request = framework_pb2.SyncBatchRequest(requests=[_struct(r) for r in requests])
        return await self._t.unary(
            method,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )


class Batches:
    """`BatchService`: read, watch, cancel and retry any async batch."""

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = batches_pb2_grpc.BatchServiceStub(channel)
        self._t = transport

    async def get(
        self, batch_id: int | str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> batches_pb2.Batch:
        request = batches_pb2.GetBatchRequest(batch_id=batch_number(batch_id))
        return await self._t.unary(self._stub.GetBatch, request, timeout_s=timeout_s)

    async def cancel(
        self, batch_id: int | str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> batches_pb2.Batch:
        """Items not started yet end `cancelled` and are refunded; `Conflict`
        (`batch_not_cancellable`) when the batch is already terminal or cancelled, which
        is also what a retry sees when the first attempt's answer was lost."""
        request = batches_pb2.CancelBatchRequest(batch_id=batch_number(batch_id))
        return await self._t.unary(self._stub.CancelBatch, request, timeout_s=timeout_s)

    async def retry_failed(
        self,
        batch_id: int | str,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> batches_pb2.Batch:
        """A new batch of the failed items, `retry_of` set, billed like any batch;
        `Conflict` (`nothing_to_retry`) when none failed."""
        request = batches_pb2.RetryFailedItemsRequest(batch_id=batch_number(batch_id))
        return await self._t.unary(
            self._stub.RetryFailedItems,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )

    async def watch(
        self, batch_id: int | str, *, cursor: str = "", timeout_s: float | None = None
    ) -> AsyncIterator[WatchUpdate]:
        """Updates until the batch is terminal: a snapshot first, then one per item
        outcome and status change.

        A stream that drops (UNAVAILABLE, or an end before the batch is terminal) is
        opened again with the last update's cursor, so no item is missed or repeated.
        The retry policy bounds consecutive failed reconnects; an update after the
        snapshot resets the count. `timeout_s` bounds the whole watch (None: no limit).
        """
        number = batch_number(batch_id)
        deadline = Deadline(timeout_s)
        failures = 0
        while True:
            call = self._stub.WatchBatch(
                batches_pb2.WatchBatchRequest(batch_id=number, cursor=cursor),
                timeout=deadline.remaining(),
                metadata=self._t.metadata,
            )
            received, terminal = 0, False
            try:
                async for message in call:
                    update = WatchUpdate.from_message(message)
                    cursor, received = update.cursor, received + 1
                    failures = 0 if received > 1 else failures
                    # A terminal snapshot is followed by the items it has not sent yet:
                    # the stream's own end, not a terminal status, ends the watch.
                    terminal = update.terminal
                    yield update
                if terminal:
                    return
                failure: ClientError = ServiceUnavailable(
                    "the watch stream ended before the batch did",
                    grpc_code=grpc.StatusCode.UNAVAILABLE,
                    retryable=True,
                )
            except grpc.aio.AioRpcError as error:
                failure = translate(error)
                if not failure.retryable:
                    raise failure from error
            finally:
                call.cancel()
            failures += 1
            wait = self._t.retry.delay(failures, failure)
            if failures >= self._t.retry.max_attempts or not deadline.allows(wait):
                raise failure
            await self._t.sleep(wait)

    async def wait(self, batch_id: int | str, *, timeout_s: float | None = None) -> BatchResult:
        """Follows the batch to its end; every item's outcome, by index."""
        items: dict[int, ItemOutcome] = {}
        last: WatchUpdate | None = None
        async for update in self.watch(batch_id, timeout_s=timeout_s):
            if update.item is not None:
                items[update.item.index] = update.item
            last = update
        assert last is not None  # watch only returns after a terminal update
        return BatchResult(batch=last.batch, items=[items[i] for i in sorted(items)])


class Webhooks:
    """`WebhooksService`: the delivery log, and redelivery."""

    def __init__(self, channel: grpc.aio.Channel, transport: Transport) -> None:
        self._stub = webhooks_pb2_grpc.WebhooksServiceStub(channel)
        self._t = transport

    async def list_deliveries(
        self,
        *,
        batch_id: int | str | None = None,
        limit: int = 50,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> webhooks_pb2.DeliveryList:
        request = webhooks_pb2.ListDeliveriesRequest(
            batch_id=0 if batch_id is None else batch_number(batch_id), limit=limit
        )
        return await self._t.unary(self._stub.ListDeliveries, request, timeout_s=timeout_s)

    async def redeliver(
        self, delivery_id: str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> webhooks_pb2.Delivery:
        request = webhooks_pb2.RedeliverRequest(delivery_id=delivery_id)
        return await self._t.unary(self._stub.RedeliverDelivery, request, timeout_s=timeout_s)
