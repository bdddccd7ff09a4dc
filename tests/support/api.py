"""Small helpers for talking JSON to the gateway in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from multidict import CIMultiDict


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_json(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, CIMultiDict[str], Any]:
    async with http.post(url, json=body, headers=headers) as response:
        return (
            response.status,
            CIMultiDict(response.headers),
            await response.json(content_type=None),
        )


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def poll_lookup(
    http: aiohttp.ClientSession, base_url: str, batch_id: int, token: str, timeout_s: float = 30
) -> dict[str, Any]:
    """GET the batch until it is finished; returns the final body.

    A 503 `unavailable` (retryable by contract: a service restarting) is retried.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await get_json(
            http, f"{base_url}/api/v1/bulk/lookup/{batch_id}", bearer(token)
        )
        if status == 503 and body.get("code") == "unavailable" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            continue
        assert status == 200, body
        if body["status"] == "finished" or time.monotonic() > deadline:
            return dict(body)
        await asyncio.sleep(0.1)


async def post_raw(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]
) -> tuple[int, CIMultiDict[str], bytes]:
    """POST JSON and keep the exact response bytes (for byte-equal comparisons)."""
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()
