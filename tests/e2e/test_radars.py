"""Single radar creation (seed 003, contract 3.4) through Envoy: per-type bodies, errors
with one entry per failing field, 402 without a charge, 409 with the conflicting id."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from tests.support.api import bearer, get_json, post_json
from tests.support.sites import WORDPRESS_PAGE, SiteServer
from tests.support.stack import RunningStack


def _org(stack: RunningStack, credits: int = 10) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "r", "--plan", "pro", "--credits", str(credits)
    )


async def _create(
    stack: RunningStack, http: aiohttp.ClientSession, token: str, kind: str, body: Any
) -> tuple[int, Any]:
    status, _, answer = await post_json(
        http, f"{stack.base_url}/v1/radars/{kind}", body, bearer(token)
    )
    return status, answer


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("company", {"domain": "https://Acme.test/", "radar_type": "technology_changes"},
         {"type": "company", "radar_type": "technology_changes", "domain": "acme.test", "filters": {}}),
        ("contact", {"profile_url": "http://people.test/jane", "radar_type": "profile_changes", "domain": "acme.test"},
         {"type": "contact", "radar_type": "profile_changes", "profile_url": "http://people.test/jane", "domain": "acme.test"}),
        ("industry", {"radar_type": "industry_mentions", "keyword": "anvils"},
         {"type": "industry", "radar_type": "industry_mentions", "keyword": "anvils"}),
        ("industry", {"radar_type": "industry_news"},
         {"type": "industry", "radar_type": "industry_news", "keyword": None}),
    ],
)  # fmt: skip
async def test_each_kind_is_created_with_201_and_charged(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    kind: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    org = _org(stack)
    status, radar = await _create(stack, http, org["token"], kind, body)

    assert status == 201, radar
    assert radar["id"].startswith("radar_")
    assert radar["status"] == "active"
    assert {k: radar[k] for k in expected} == expected
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 9

    status, fetched = await get_json(
        http, f"{stack.base_url}/v1/radars/{radar['id']}", bearer(org["token"])
    )
    assert (status, fetched) == (200, radar)


async def test_validation_errors_name_every_failing_field(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    status, error = await _create(
        stack,
        http,
        org["token"],
        "contact",
        {"radar_type": "nope", "profile_url": "ftp://x", "extra": 1},
    )

    assert status == 400
    assert error["code"] == 400
    assert error["message"] == "Validation error"
    assert {e["field"] for e in error["errors"]} == {"extra", "radar_type", "domain", "profile_url"}
    status, error = await _create(
        stack, http, org["token"], "industry", {"radar_type": "industry_job_openings"}
    )
    assert (status, [e["field"] for e in error["errors"]]) == (400, ["keyword"])
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 10


async def test_insufficient_balance_is_402_and_creates_nothing(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, credits=0)
    status, error = await _create(
        stack,
        http,
        org["token"],
        "company",
        {"domain": "acme.test", "radar_type": "technology_changes"},
    )

    assert status == 402
    assert error == {"code": 402, "message": "Insufficient balance", "errors": []}
    status, listed = await get_json(http, f"{stack.base_url}/v1/radars", bearer(org["token"]))
    assert (status, listed["radars"]) == (200, [])


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("company", {"domain": "acme.test", "radar_type": "technology_changes"}, "domain"),
        ("contact", {"profile_url": "http://people.test/jane", "radar_type": "profile_changes", "domain": "acme.test"}, "identifiers"),
        ("industry", {"radar_type": "industry_mentions", "keyword": "Anvils"}, "keyword"),
        ("industry", {"radar_type": "industry_news"}, "radar_type"),
    ],
)  # fmt: skip
async def test_the_same_configuration_twice_is_409_with_the_conflicting_id(
    stack: RunningStack, http: aiohttp.ClientSession, kind: str, body: dict[str, Any], field: str
) -> None:
    org = _org(stack)
    _, first = await _create(stack, http, org["token"], kind, body)

    status, error = await _create(stack, http, org["token"], kind, body)

    assert status == 409
    assert error["code"] == 409
    assert error["conflicting_radar_id"] == first["id"]
    assert [e["field"] for e in error["errors"]] == [field]
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 9

    # A deactivated radar no longer conflicts.
    status, _, stopped = await post_json(
        http, f"{stack.base_url}/v1/radars/{first['id']}/deactivate", {}, bearer(org["token"])
    )
    assert (status, stopped["status"]) == (200, "inactive")
    status, _ = await _create(stack, http, org["token"], kind, body)
    assert status == 201


async def test_radars_are_listed_and_private_to_their_organisation(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    for domain in ("a.test", "b.test", "c.test"):
        await _create(
            stack,
            http,
            org["token"],
            "company",
            {"domain": domain, "radar_type": "website_changes"},
        )

    status, page = await get_json(http, f"{stack.base_url}/v1/radars?limit=2", bearer(org["token"]))
    assert status == 200
    assert len(page["radars"]) == 2
    assert page["next_offset"] == 2
    status, rest = await get_json(
        http, f"{stack.base_url}/v1/radars?limit=2&offset=2", bearer(org["token"])
    )
    assert (len(rest["radars"]), rest["next_offset"]) == (1, None)

    other = _org(stack)
    status, _ = await get_json(
        http, f"{stack.base_url}/v1/radars/{page['radars'][0]['id']}", bearer(other["token"])
    )
    assert status == 404
    status, error = await _create(
        stack,
        http,
        "bp_not_a_token",
        "company",
        {"domain": "a.test", "radar_type": "website_changes"},
    )
    assert (status, error["code"]) == (401, 401)


async def test_a_company_radar_records_technology_changes_of_its_site(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    status, _ = await _create(
        stack,
        http,
        org["token"],
        "company",
        {"domain": "watched.test", "radar_type": "technology_changes"},
    )
    assert status == 201
    checks = sites.hits.get("watched.test", 0)
    deadline = time.monotonic() + 30
    while sites.hits.get("watched.test", 0) <= checks and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # the first check stores the baseline

    sites.sites["watched.test"].body = WORDPRESS_PAGE
    url = f"{stack.base_url}/api/v1/signals/batch"
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        _, _, answer = await post_json(
            http, url, {"requests": [{"domain": "watched.test"}]}, bearer(org["token"])
        )
        found = answer["data"][0].get("data", {}).get("signals", [])

    assert {s["type"] for s in found} == {"technology_added"}
    assert "WordPress" in {s["data"]["technology"] for s in found}
