"""Bulk lookup (seed 000, contract 3.1) end to end: JSON through Envoy → intake →
Kafka → processor → PostgreSQL, fetching real sites served on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

SEED_REQUEST = {
    "domains": ["example.com", "https://foo.bar/"],
    "recompute": False,
    "max_age": 604800000,
    "list_id": 42,
}
SEED_FIELDS = {
    "id", "status", "requested_count", "processed_count", "success_count", "error_count",
    "created_at", "started_at", "finished_at", "links",
}  # fmt: skip


def _url(stack: RunningStack) -> str:
    return f"{stack.base_url}/api/v1/bulk/lookup"


def _balance(stack: RunningStack, org: dict[str, Any]) -> int:
    return int(stack.cli("admin", "show-org", org["org_id"])["credit_balance"])


async def test_seed_request_is_accepted_with_the_seed_response(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    status, headers, body = await post_json(http, _url(stack), SEED_REQUEST, bearer(org["token"]))

    assert status == 202
    assert set(body) == SEED_FIELDS
    assert isinstance(body["id"], int)
    assert headers["Location"] == f"/api/v1/bulk/lookup/{body['id']}"
    assert body["links"] == {"self": f"/api/v1/bulk/lookup/{body['id']}"}
    assert body["status"] == "queued"
    assert body["requested_count"] == 2
    assert (body["processed_count"], body["success_count"], body["error_count"]) == (0, 0, 0)
    assert body["started_at"] is None and body["finished_at"] is None
    assert body["created_at"].endswith("Z")

    final = await poll_lookup(http, stack.base_url, body["id"], org["token"])
    assert final["status"] == "finished"
    assert final["processed_count"] == 2
    assert final["started_at"] is not None and final["finished_at"] is not None
    # No network here: both public domains fail to resolve, and are refunded.
    assert [r["domain"] for r in final["results"]] == ["example.com", "foo.bar"]
    assert all(r["status"] == "failed" and r["error"] for r in final["results"])
    assert final["error_count"] == 2
    assert _balance(stack, org) == 1000


async def test_lookup_detects_technologies_on_a_served_site(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    status, _, body = await post_json(
        http,
        _url(stack),
        {"domains": ["wp.test", "plain.test"], "recompute": True},
        bearer(org["token"]),
    )
    assert status == 202

    final = await poll_lookup(http, stack.base_url, body["id"], org["token"])

    assert (final["status"], final["success_count"], final["error_count"]) == ("finished", 2, 0)
    wp, plain = final["results"]
    found = {t["name"]: t for t in wp["technologies"]}
    assert found["WordPress"]["version"] == "6.4.2"
    assert found["Nginx"]["version"] == "1.24.0"
    assert found["PHP"]["version"] == "8.2.1"
    assert "jQuery" in found and "Bootstrap" in found
    assert "CMS" in found["WordPress"]["categories"]
    assert wp["status"] == "succeeded" and wp["error"] is None and wp["cached"] is False
    assert wp["looked_up_at"].endswith("Z")
    assert "Apache HTTP Server" in {t["name"] for t in plain["technologies"]}
    assert _balance(stack, org) == 998


async def test_duplicates_after_normalisation_count_once(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    domains = ["wp.test", "WP.test", "http://wp.test/path?q=1", "wp.test."]
    status, _, body = await post_json(http, _url(stack), {"domains": domains}, bearer(org["token"]))

    assert status == 202
    assert body["requested_count"] == 1
    assert _balance(stack, org) == 999
    final = await poll_lookup(http, stack.base_url, body["id"], org["token"])
    assert [r["domain"] for r in final["results"]] == ["wp.test"]


async def test_invalid_domain_fails_its_item_only_and_is_refunded(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    status, _, body = await post_json(
        http, _url(stack), {"domains": ["plain.test", "not a domain"]}, bearer(org["token"])
    )
    assert status == 202

    final = await poll_lookup(http, stack.base_url, body["id"], org["token"])

    results = {r["domain"]: r for r in final["results"]}
    assert results["not a domain"]["status"] == "failed"
    assert results["not a domain"]["error"] == "invalid_domain"
    assert results["plain.test"]["status"] == "succeeded"
    assert (final["success_count"], final["error_count"]) == (1, 1)
    assert _balance(stack, org) == 999


async def test_stored_result_is_reused_within_max_age_unless_recompute(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    token = org["token"]
    _, _, first = await post_json(
        http, _url(stack), {"domains": ["www.wp.test"], "recompute": True}, bearer(token)
    )
    await poll_lookup(http, stack.base_url, first["id"], token)
    hits = sites.hits.get("www.wp.test", 0)

    _, _, cached = await post_json(http, _url(stack), {"domains": ["www.wp.test"]}, bearer(token))
    cached_result = (await poll_lookup(http, stack.base_url, cached["id"], token))["results"][0]
    assert cached_result["cached"] is True
    assert cached_result["status"] == "succeeded"
    assert "WordPress" in {t["name"] for t in cached_result["technologies"]}
    assert sites.hits["www.wp.test"] == hits

    _, _, stale = await post_json(
        http, _url(stack), {"domains": ["www.wp.test"], "max_age": 0}, bearer(token)
    )
    assert (await poll_lookup(http, stack.base_url, stale["id"], token))["results"][0][
        "cached"
    ] is False
    assert sites.hits["www.wp.test"] == hits + 1

    _, _, forced = await post_json(
        http, _url(stack), {"domains": ["www.wp.test"], "recompute": True}, bearer(token)
    )
    assert (await poll_lookup(http, stack.base_url, forced["id"], token))["results"][0][
        "cached"
    ] is False
    assert sites.hits["www.wp.test"] == hits + 2


async def test_list_id_collects_domains_with_their_latest_results(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    token = org["token"]
    _, _, body = await post_json(
        http, _url(stack), {"domains": ["plain.test", "wp.test"], "list_id": 7}, bearer(token)
    )
    await poll_lookup(http, stack.base_url, body["id"], token)

    status, listed = await get_json(http, f"{stack.base_url}/api/v1/lists/7", bearer(token))

    assert status == 200
    assert listed["list_id"] == 7
    entries = {d["domain"]: d for d in listed["domains"]}
    assert set(entries) == {"plain.test", "wp.test"}
    assert "WordPress" in {t["name"] for t in entries["wp.test"]["technologies"]}
    other = stack.cli("admin", "create-org", "--name", "other", "--plan", "pro", "--credits", "5")
    status, error = await get_json(http, f"{stack.base_url}/api/v1/lists/7", bearer(other["token"]))
    assert status == 404
    assert error["code"] == "not_found"


async def test_another_organisations_batch_is_not_found(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    _, _, body = await post_json(
        http, _url(stack), {"domains": ["plain.test"]}, bearer(org["token"])
    )
    other = stack.cli("admin", "create-org", "--name", "other", "--plan", "pro", "--credits", "5")

    status, error = await get_json(http, f"{_url(stack)}/{body['id']}", bearer(other["token"]))

    assert status == 404
    assert set(error) == {"error", "code"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"X-API-Key": "bp_unknown"},
    ],
)
async def test_missing_or_unknown_token_is_401(
    stack: RunningStack, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, _, body = await post_json(http, _url(stack), SEED_REQUEST, headers)

    assert status == 401
    assert isinstance(body["error"], str) and body["error"]


async def test_x_api_key_is_accepted(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    status, _, _ = await post_json(
        http, _url(stack), {"domains": ["plain.test"]}, {"X-API-Key": org["token"]}
    )
    assert status == 202


async def test_insufficient_credits_is_402_and_charges_nothing(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    poor = stack.cli("admin", "create-org", "--name", "poor", "--plan", "pro", "--credits", "1")

    status, _, body = await post_json(
        http, _url(stack), {"domains": ["a.test", "b.test"]}, bearer(poor["token"])
    )

    assert status == 402
    assert body["code"] == "insufficient_credits"
    shown = stack.cli("admin", "show-org", poor["org_id"])
    assert shown["credit_balance"] == 1
    assert [line["kind"] for line in shown["ledger"]] == ["topup"]
    assert shown["usage"]["units"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "domains must be a non-empty array"),
        ({"domains": []}, "domains must be a non-empty array"),
        ({"domains": "x"}, "domains must be a non-empty array"),
        ({"domains": ["a.test", 3]}, "domains[1] must be a string"),
        ({"domains": ["a.test"], "zzz": 1}, "unknown field: zzz"),
        ({"domains": ["a.test"], "recompute": "yes"}, "recompute must be a boolean"),
        ({"domains": ["a.test"], "max_age": -1}, "max_age must be between"),
        ({"domains": ["a.test"], "max_age": 1.5}, "max_age must be an integer"),
        ({"domains": ["a.test"], "list_id": "42"}, "list_id must be an integer"),
        ({"domains": [f"d{i}.test" for i in range(101)]}, "domains must have at most 100 elements"),
        ([1, 2], "request body must be a JSON object"),
    ],
)
async def test_bad_bodies_are_4xx_with_the_seed_error_shape(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    org: dict[str, Any],
    body: Any,
    message: str,
) -> None:
    status, _, answer = await post_json(http, _url(stack), body, bearer(org["token"]))

    assert status == (400 if isinstance(body, list) else 422)
    assert answer["error"].startswith(message)
    assert _balance(stack, org) == 1000


async def test_malformed_json_is_400(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    headers = {**bearer(org["token"]), "Content-Type": "application/json"}
    async with http.post(_url(stack), data=b'{"domains": [', headers=headers) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"].startswith("request body is not valid JSON")


async def test_too_many_domains_is_batch_too_large(
    stack: RunningStack, http: aiohttp.ClientSession, org: dict[str, Any]
) -> None:
    body = {"domains": [f"d{i}.test" for i in range(101)]}
    status, _, answer = await post_json(http, _url(stack), body, bearer(org["token"]))
    assert (status, answer["code"]) == (422, "batch_too_large")
