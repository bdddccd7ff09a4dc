"""The gateway's own behaviour: health, JSON for Envoy's own replies, edge hygiene,
and the same RPCs for internal gRPC callers."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import grpc
import pytest
from tests.support.api import bearer, post_json
from tests.support.stack import RunningStack

from batchplane.api.lookup.v1 import lookup_pb2, lookup_pb2_grpc


async def test_healthz_reflects_intake_health(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{stack.base_url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_unknown_route_is_a_json_404(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{stack.base_url}/api/v1/nothing-here") as response:
        assert response.status == 404
        assert await response.json() == {"error": "not found", "code": "not_found"}


async def test_bad_path_parameter_is_a_json_400(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    url = f"{stack.base_url}/api/v1/bulk/lookup/not-a-number"
    async with http.get(url, headers=bearer(org["token"])) as response:
        assert response.status == 400
        body = await response.json()
    assert body["code"] == "invalid_request"
    assert "not-a-number" in body["error"]


async def test_oversized_body_is_rejected_at_the_gateway_with_413(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    huge = io.BytesIO(b'{"domains": ["a.test"], "pad": "' + b"x" * 2_000_000 + b'"}')
    headers = {**bearer(org["token"]), "Content-Type": "application/json"}
    async with http.post(
        f"{stack.base_url}/api/v1/bulk/lookup", data=huge, headers=headers
    ) as response:
        assert response.status == 413
        assert await response.json() == {
            "error": "request body too large",
            "code": "payload_too_large",
        }


async def test_binary_metadata_and_grpc_headers_from_clients_are_stripped(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    headers = {**bearer(org["token"]), "x-evil-bin": "!!!not base64", "grpc-timeout": "1n"}
    status, response_headers, _ = await post_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup", {"domains": ["plain.test"]}, headers
    )
    assert status == 202
    internal = ("grpc-", "x-http-status", "x-error-body")
    assert not any(name.lower().startswith(internal) for name in response_headers)


async def test_internal_grpc_callers_use_the_same_rpc_with_typed_fields(
    stack: RunningStack, org: dict[str, Any]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['intake']}") as channel:
        stub = lookup_pb2_grpc.BulkLookupServiceStub(channel)
        metadata = (("authorization", f"Bearer {org['token']}"),)
        call = stub.CreateBulkLookup(
            lookup_pb2.CreateBulkLookupRequest(domains=["plain.test", "Plain.test"], list_id=3),
            metadata=metadata,
        )
        batch = await call
        initial = dict(await call.initial_metadata())
        assert batch.requested_count == 1
        assert batch.status == "queued"
        assert initial["x-http-status"] == "202"
        assert initial["location"] == f"/api/v1/bulk/lookup/{batch.id}"

        fetched = await stub.GetBulkLookup(
            lookup_pb2.GetBulkLookupRequest(id=batch.id), metadata=metadata
        )
        assert fetched.id == batch.id

        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await stub.CreateBulkLookup(
                lookup_pb2.CreateBulkLookupRequest(domains=[]), metadata=metadata
            )
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert empty.value.details() == "domains must be a non-empty array"

        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetBulkLookup(lookup_pb2.GetBulkLookupRequest(id=batch.id))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
