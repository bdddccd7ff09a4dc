"""No outbound fetch reaches a private, loopback, link-local or metadata address, whatever
the family (lookup, enrichment, scrape, webhook) and however it is named: an IP literal in
any IPv4 or IPv6 form, a host name that resolves to one, or a redirect into one.

The stack's resolver answers the evil host names below (the same guarded resolver checks
fixed answers and DNS answers alike). Its operator allow-list is 127.0.0.0/8, which is why
the fixture sites on 127.0.0.1 are fetched and ::1 is not. Address forms, DNS rebinding at
the resolver and redirect hops are unit-tested in tests/unit/lookup/test_fetch.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.sites import PLAIN_PAGE, Site, SiteServer
from tests.support.stack import OwnStack, RunningStack

EVIL_NAMES = {
    "meta.test": "169.254.169.254",
    "priv.test": "10.0.0.1",
    "v6loop.test": "::1",
    "mapped.test": "::ffff:10.0.0.1",
    "linklocal6.test": "fe80::1",
    "ula6.test": "fd00:ec2::254",
}
REDIRECTS = {
    "to-meta.test": "http://169.254.169.254/latest/meta-data/",
    "to-v6.test": "http://[::1]/",
    "to-priv.test": "http://priv.test/",
    "to-mapped.test": "http://[::ffff:169.254.169.254]/",
}
LITERALS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://[fd00:ec2::254]/",
    "http://0x0a000001/",
]
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(own_stack: OwnStack, sites: SiteServer) -> AsyncIterator[RunningStack]:
    for host, location in REDIRECTS.items():
        sites.sites[host] = Site(PLAIN_PAGE, {"Location": location}, status=302)
    overrides = {**dict.fromkeys(sites.sites, "127.0.0.1"), **EVIL_NAMES}
    extra = {
        "BATCHPLANE_FETCH_HOST_OVERRIDES": ",".join(f"{h}={ip}" for h, ip in overrides.items())
    }
    async with own_stack(extra) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def org(stack: RunningStack) -> dict[str, Any]:
    return stack.cli("admin", "create-org", "--name", "ssrf", "--plan", "pro", "--credits", "500")


async def test_lookups_refuse_every_internal_target(
    stack: RunningStack, org: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    domains = [*EVIL_NAMES, *REDIRECTS, "plain.test"]
    status, _, batch = await post_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup", {"domains": domains}, bearer(org["token"])
    )
    assert status == 202, batch
    final = await poll_lookup(http, stack.base_url, batch["id"], org["token"], timeout_s=60)
    errors = {r["domain"]: r["error"] for r in final["results"]}
    assert errors == {
        **dict.fromkeys([*EVIL_NAMES, *REDIRECTS], "blocked_address"),
        "plain.test": None,
    }
    assert final["error_count"] == len(domains) - 1


async def test_scrape_jobs_refuse_every_internal_target(
    stack: RunningStack, org: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    urls = [*LITERALS, *(f"http://{h}/" for h in [*EVIL_NAMES, *REDIRECTS]), "http://blog.test/"]
    status, _, batch = await post_json(
        http,
        f"{stack.base_url}/v1/scrape/batch",
        {"urls": urls, "schema": SCHEMA},
        bearer(org["token"]),
    )
    assert status == 200, batch
    deadline = time.monotonic() + 60
    while True:
        status, body = await get_json(
            http, f"{stack.base_url}/v1/scrape/batch/{batch['batch_id']}", bearer(org["token"])
        )
        if body["progress"]["pending"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    errors = {}
    for job in body["jobs"]:
        _, detail = await get_json(
            http, f"{stack.base_url}/v1/scrape/jobs/{job['job_id']}", bearer(org["token"])
        )
        errors[job["url"]] = (job["status"], detail["error"])
    assert errors.pop("http://blog.test/")[0] == "completed"
    assert {status for status, _ in errors.values()} == {"failed"}, errors
    # The legacy numeric form is refused before any resolution, as not a canonical address.
    assert errors.pop("http://0x0a000001/")[1].startswith("invalid_url")
    assert all(error.startswith("blocked_address") for _, error in errors.values()), errors


async def test_enrichment_refuses_an_entity_site_on_an_internal_address(
    stack: RunningStack, org: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    tasks = [{"entityId": host, "field": "summary"} for host in ("meta.test", "to-meta.test")]
    status, _, records = await post_json(
        http,
        f"{stack.base_url}/api/v1/operations/enrichment/batch",
        {"tasks": tasks},
        bearer(org["token"]),
    )
    assert status == 202, records
    for record in records:
        deadline = time.monotonic() + 60
        while True:
            _, current = await get_json(
                http,
                f"{stack.base_url}/api/v1/operations/enrichment/{record['id']}",
                bearer(org["token"]),
            )
            if current["status"] not in ("pending", "processing") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert current["status"] == "failed", current
        assert "blocked_address" in json.dumps(current), current


async def test_webhooks_refuse_internal_targets(
    stack: RunningStack, org: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    lookup = f"{stack.base_url}/api/v1/bulk/lookup"
    for url in ("http://169.254.169.254/hook", "http://[::1]/hook", "http://10.0.0.1/hook"):
        status, _, body = await post_json(
            http, lookup, {"domains": ["plain.test"], "webhook_url": url}, bearer(org["token"])
        )
        assert status == 422, (url, status, body)
    # https is accepted at intake (it cannot resolve the name then); the notifier's
    # guarded resolver refuses the address when it sends.
    status, _, batch = await post_json(
        http,
        lookup,
        {"domains": ["plain.test"], "webhook_url": "https://meta.test/hook"},
        bearer(org["token"]),
    )
    assert status == 202, batch
    deadline = time.monotonic() + 60
    while True:
        _, body = await get_json(
            http,
            f"{stack.base_url}/api/v1/webhooks/deliveries?batch_id={batch['id']}",
            bearer(org["token"]),
        )
        deliveries = body["deliveries"]
        if (
            deliveries and all(d["status"] != "pending" for d in deliveries)
        ) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert deliveries and {d["status"] for d in deliveries} == {"failed"}, deliveries
    assert "blocked_address" in json.dumps(deliveries), deliveries
