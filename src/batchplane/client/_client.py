"""`BatchplaneClient`: the channel, the credentials, the services and the batch helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Literal, Self, cast, overload

import grpc

from batchplane.api.batches.v1 import batches_pb2
from batchplane.client._services import (
    Batches,
    BatchFramework,
    BulkLookups,
    EnrichmentOperations,
    Radars,
    Scrapes,
    Webhooks,
    batch_number,
)
from batchplane.client._transport import (
    DEFAULT_TIMEOUT,
    RetryPolicy,
    Timeout,
    Transport,
    auth_metadata,
    channel_options,
)
from batchplane.client._types import (
    BatchResult,
    BulkLookupBody,
    BulkRadarsBody,
    Family,
    ScrapeBatchBody,
    WatchUpdate,
)

DEFAULT_TARGET = "127.0.0.1:50051"


class BatchplaneClient:
    """An async client of intake's gRPC services.

    `target` is intake's `host:port`; `tls=True` uses the system's root certificates,
    or pass `grpc.ssl_channel_credentials(…)`. Or pass a ready `channel` (with your own
    interceptors or options): the client then leaves closing it to you. `token` is sent
    as `authorization: Bearer …`, `api_key` as `x-api-key`; `organization_id` names the
    organisation for a token bound to none. `timeout_s` is the default deadline of one
    logical call, retries included (None: no deadline); each method takes its own.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        api_key: str | None = None,
        organization_id: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        channel: grpc.aio.Channel | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        timeout_s: float | None = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        retry = retry or RetryPolicy()
        if channel is not None and (tls is not False or options):
            raise ValueError("tls and options configure the client's own channel, not yours")
        self._owns_channel = channel is None
        self._channel = channel or _open_channel(target, tls, channel_options(retry, options))
        self._transport = Transport(
            metadata=auth_metadata(token=token, api_key=api_key, organization_id=organization_id),
            timeout_s=timeout_s,
            retry=retry,
        )
        self.lookups = BulkLookups(self._channel, self._transport)
        self.scrapes = Scrapes(self._channel, self._transport)
        self.enrichments = EnrichmentOperations(self._channel, self._transport)
        self.radars = Radars(self._channel, self._transport)
        self.framework = BatchFramework(self._channel, self._transport)
        self.batches = Batches(self._channel, self._transport)
        self.webhooks = Webhooks(self._channel, self._transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel the client opened (never one passed in)."""
        if self._owns_channel:
            await self._channel.close()

    # Batch helpers, for every async family (`lookup`, `scrape`, `radar` bulks, and
    # enrichment batches by id).

    async def get_batch(
        self, batch_id: int | str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> batches_pb2.Batch:
        return await self.batches.get(batch_id, timeout_s=timeout_s)

    async def cancel(
        self, batch_id: int | str, *, timeout_s: Timeout = DEFAULT_TIMEOUT
    ) -> batches_pb2.Batch:
        return await self.batches.cancel(batch_id, timeout_s=timeout_s)

    async def retry_failed(
        self,
        batch_id: int | str,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
    ) -> batches_pb2.Batch:
        return await self.batches.retry_failed(
            batch_id, idempotency_key=idempotency_key, timeout_s=timeout_s
        )

    def watch(
        self, batch_id: int | str, *, cursor: str = "", timeout_s: float | None = None
    ) -> AsyncIterator[WatchUpdate]:
        return self.batches.watch(batch_id, cursor=cursor, timeout_s=timeout_s)

    async def wait(self, batch_id: int | str, *, timeout_s: float | None = None) -> BatchResult:
        return await self.batches.wait(batch_id, timeout_s=timeout_s)

    @overload
    async def submit_and_wait(
        self,
        family: Literal["lookup"],
        body: BulkLookupBody,
        *,
        idempotency_key: str | None = ...,
        timeout_s: Timeout = ...,
        wait_timeout_s: float | None = ...,
    ) -> BatchResult: ...

    @overload
    async def submit_and_wait(
        self,
        family: Literal["scrape"],
        body: ScrapeBatchBody,
        *,
        idempotency_key: str | None = ...,
        timeout_s: Timeout = ...,
        wait_timeout_s: float | None = ...,
    ) -> BatchResult: ...

    @overload
    async def submit_and_wait(
        self,
        family: Literal["radar"],
        body: BulkRadarsBody,
        *,
        idempotency_key: str | None = ...,
        timeout_s: Timeout = ...,
        wait_timeout_s: float | None = ...,
    ) -> BatchResult: ...

    async def submit_and_wait(
        self,
        family: Family,
        body: BulkLookupBody | ScrapeBatchBody | BulkRadarsBody,
        *,
        idempotency_key: str | None = None,
        timeout_s: Timeout = DEFAULT_TIMEOUT,
        wait_timeout_s: float | None = None,
    ) -> BatchResult:
        """Submits a batch, then watches it to its end (resuming dropped streams).

        `timeout_s` bounds the submission, `wait_timeout_s` the watch (None: no limit).
        Enrichment triggers answer records without their batch id, so they are not
        submitted here: follow them with `enrichments.query`.
        """
        batch_id = await self._submit(family, body, idempotency_key, timeout_s)
        return await self.batches.wait(batch_id, timeout_s=wait_timeout_s)

    async def _submit(
        self,
        family: Family,
        body: BulkLookupBody | ScrapeBatchBody | BulkRadarsBody,
        idempotency_key: str | None,
        timeout_s: Timeout,
    ) -> int:
        """The new batch's id; each family's create answers it in its own shape."""
        if family == "lookup":
            lookup = cast(BulkLookupBody, body)
            created = await self.lookups.create(
                lookup["domains"],
                recompute=lookup.get("recompute", False),
                max_age=lookup.get("max_age"),
                list_id=lookup.get("list_id"),
                webhook_url=lookup.get("webhook_url"),
                idempotency_key=idempotency_key,
                timeout_s=timeout_s,
            )
            return created.id
        if family == "scrape":
            scrape = cast(ScrapeBatchBody, body)
            batch = await self.scrapes.create(
                scrape, idempotency_key=idempotency_key, timeout_s=timeout_s
            )
            return batch_number(batch.batch_id)
        if family == "radar":
            bulk = cast(BulkRadarsBody, body)
            accepted = await self.radars.create_bulk(
                bulk, idempotency_key=idempotency_key, timeout_s=timeout_s
            )
            return batch_number(accepted["bulk_id"])
        raise ValueError(f"not a batch family submit_and_wait knows: {family!r}")


def _open_channel(
    target: str,
    tls: bool | grpc.ChannelCredentials,
    options: list[tuple[str, str | int]],
) -> grpc.aio.Channel:
    if tls is False:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials() if tls is True else tls
    return grpc.aio.secure_channel(target, credentials, options=options)
