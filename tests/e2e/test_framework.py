"""The batch framework (seed 001, contract sections 1, 2 and 3.2) through Envoy:
tenancy, scopes, plan caps, rate limits, quota metering, idempotency keys and the
synchronous 200/207 batch endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from tests.support.api import bearer, get_json, poll_lookup, post_json, post_raw
from tests.support.sites import WORDPRESS_PAGE, SiteServer
from tests.support.stack import RunningStack

from batchplane.core.plans import DEFAULT_PLANS

SYNC_ROUTES = {
    "intelligence": ("/api/v1/intelligence/batch", "intelligence.read"),
    "signals": ("/api/v1/signals/batch", "signals.read"),
    "enrichment": ("/api/v1/enrichment/batch", "enrichment.read"),
}
LOOKUP = "/api/v1/bulk/lookup"


def _org(
    stack: RunningStack, plan: str = "pro", credits: int = 1000, **extra: str
) -> dict[str, Any]:
    args = [
        "admin",
        "create-org",
        "--name",
        f"{plan}-org",
        "--plan",
        plan,
        "--credits",
        str(credits),
    ]
    for key, value in extra.items():
        args += [f"--{key}", value]
    return stack.cli(*args)


async def _usage(stack: RunningStack, http: aiohttp.ClientSession, token: str) -> int:
    status, body = await get_json(http, f"{stack.base_url}/api/v1/usage", bearer(token))
    assert status == 200, body
    return int(body["units"])


async def _look_up(
    stack: RunningStack, http: aiohttp.ClientSession, token: str, *domains: str
) -> None:
    status, _, body = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": list(domains), "recompute": True},
        bearer(token),
    )
    assert status == 202, body
    assert (await poll_lookup(http, stack.base_url, body["id"], token))["status"] == "finished"


# --- synchronous endpoints: 200 / 207 --------------------------------------------------


async def test_intelligence_answers_every_item_in_order_with_207_on_any_failure(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    await _look_up(stack, http, org["token"], "wp.test")
    body = {"requests": [{"domain": "wp.test"}, {"domain": "never-seen.test"}, {"nope": 1}, 7]}

    status, _, answer = await post_json(
        http, f"{stack.base_url}/api/v1/intelligence/batch", body, bearer(org["token"])
    )

    assert status == 207
    first, unknown, malformed, not_object = answer["data"]
    assert first["status"] == 200
    assert first["data"]["domain"] == "wp.test"
    assert "WordPress" in {t["name"] for t in first["data"]["technologies"]}
    assert unknown == {
        "status": 404,
        "error": {"code": "not_found", "message": unknown["error"]["message"]},
    }
    assert malformed["status"] == 400
    assert malformed["error"]["code"] == "invalid_item"
    assert not_object["error"]["code"] == "invalid_item"
    assert answer["meta"] == {"batch": {"total": 4, "succeeded": 1, "failed": 3}}
    assert await _usage(stack, http, org["token"]) == 1 + 4  # the lookup, then every item


async def test_all_items_succeeding_is_200(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    await _look_up(stack, http, org["token"], "plain.test")

    status, _, answer = await post_json(
        http,
        f"{stack.base_url}/api/v1/intelligence/batch",
        {"requests": [{"domain": "plain.test"}, {"domain": "https://PLAIN.test/x"}]},
        bearer(org["token"]),
    )

    assert status == 200
    assert [item["status"] for item in answer["data"]] == [200, 200]
    assert answer["meta"]["batch"] == {"total": 2, "succeeded": 2, "failed": 0}


async def test_signals_record_technology_changes_between_lookups(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    url = f"{stack.base_url}/api/v1/signals/batch"
    await _look_up(stack, http, org["token"], "changing.test")
    status, _, before = await post_json(
        http, url, {"requests": [{"domain": "changing.test"}]}, bearer(org["token"])
    )
    assert status == 200
    assert before["data"][0]["data"]["signals"] == []

    sites.sites["changing.test"].body = WORDPRESS_PAGE
    await _look_up(stack, http, org["token"], "changing.test")

    status, _, after = await post_json(
        http,
        url,
        {
            "requests": [
                {"domain": "changing.test"},
                {"domain": "changing.test", "types": ["technology_removed"]},
                {"domain": "changing.test", "since": "2999-01-01T00:00:00Z"},
                {"domain": "changing.test", "types": ["weather"]},
            ]
        },
        bearer(org["token"]),
    )
    assert status == 207
    added = after["data"][0]["data"]["signals"]
    assert {s["type"] for s in added} == {"technology_added"}
    assert "WordPress" in {s["data"]["technology"] for s in added}
    assert after["data"][1]["data"]["signals"] == []
    assert after["data"][2]["data"]["signals"] == []
    assert after["data"][3]["error"]["code"] == "invalid_item"


async def test_enrichment_batch_answers_not_found_without_records(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    status, _, answer = await post_json(
        http,
        f"{stack.base_url}/api/v1/enrichment/batch",
        {
            "requests": [
                {"entity_id": "550e8400-e29b-41d4-a716-446655440000", "field": "phones"},
                {"field": "x"},
            ]
        },
        bearer(org["token"]),
    )
    assert status == 207
    assert [(d["status"], d["error"]["code"]) for d in answer["data"]] == [
        (404, "not_found"),
        (400, "invalid_item"),
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [({}, "invalid_request"), ({"requests": []}, "invalid_request"), ({"requests": {}}, "invalid_request"),
     ({"requests": [{}], "extra": 1}, "unknown_field")],
)  # fmt: skip
async def test_bad_envelopes_are_422_and_meter_nothing(
    stack: RunningStack, http: aiohttp.ClientSession, body: dict[str, Any], code: str
) -> None:
    org = _org(stack)
    status, _, answer = await post_json(
        http, f"{stack.base_url}/api/v1/signals/batch", body, bearer(org["token"])
    )
    assert (status, answer["code"]) == (422, code)
    assert await _usage(stack, http, org["token"]) == 0


# --- tenancy and scopes ----------------------------------------------------------------


async def test_unbound_tokens_need_an_organization_header(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    unbound = stack.cli("admin", "create-token", "--org", org["org_id"], "--unbound")["token"]
    other = _org(stack)
    url = f"{stack.base_url}/api/v1/usage"

    status, body = await get_json(http, url, bearer(unbound))
    assert (status, body["error"]) == (400, "Organization ID is missing")

    status, body = await get_json(
        http, url, {**bearer(unbound), "X-Organization-Id": org["org_id"]}
    )
    assert (status, body["org_id"]) == (200, org["org_id"])

    status, body = await get_json(
        http, url, {**bearer(unbound), "X-Organization-Id": other["org_id"]}
    )
    assert (status, body["code"]) == (403, "organization_forbidden")


@pytest.mark.parametrize("family", sorted(SYNC_ROUTES))
async def test_missing_scope_is_403_and_meters_nothing(
    stack: RunningStack, http: aiohttp.ClientSession, family: str
) -> None:
    org = _org(stack)
    route, scope = SYNC_ROUTES[family]
    others = [s for _, s in SYNC_ROUTES.values() if s != scope] + ["lookup.write"]
    token = stack.cli(
        "admin", "create-token", "--org", org["org_id"], "--scopes", ",".join(others)
    )["token"]

    status, _, body = await post_json(
        http, f"{stack.base_url}{route}", {"requests": [{"domain": "a.test"}]}, bearer(token)
    )

    assert (status, body["code"]) == (403, "insufficient_scope")
    granted = stack.cli("admin", "create-token", "--org", org["org_id"], "--scopes", scope)["token"]
    status, _, _ = await post_json(
        http, f"{stack.base_url}{route}", {"requests": [{"domain": "a.test"}]}, bearer(granted)
    )
    assert status in (200, 207)
    assert await _usage(stack, http, org["token"]) == 1


async def test_lookup_needs_lookup_write(stack: RunningStack, http: aiohttp.ClientSession) -> None:
    org = _org(stack)
    token = stack.cli("admin", "create-token", "--org", org["org_id"], "--scopes", "signals.read")[
        "token"
    ]
    status, _, body = await post_json(
        http, f"{stack.base_url}{LOOKUP}", {"domains": ["a.test"]}, bearer(token)
    )
    assert (status, body["code"]) == (403, "insufficient_scope")
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 1000


# --- plans: batch caps -------------------------------------------------------------------


@pytest.mark.parametrize("plan", ["free", "starter", "pro", "enterprise"])
async def test_each_plan_caps_batch_size(
    stack: RunningStack, http: aiohttp.ClientSession, plan: str
) -> None:
    org = _org(stack, plan, credits=1000)
    cap = DEFAULT_PLANS[plan].max_batch_size
    url = f"{stack.base_url}/api/v1/intelligence/batch"

    status, _, _ = await post_json(
        http, url, {"requests": [{"domain": "a.test"}] * cap}, bearer(org["token"])
    )
    assert status == 207
    status, _, body = await post_json(
        http, url, {"requests": [{"domain": "a.test"}] * (cap + 1)}, bearer(org["token"])
    )
    assert (status, body["code"]) == (422, "batch_too_large")

    lookup_cap = min(cap, 100)
    domains = [f"d{i}.test" for i in range(lookup_cap + 1)]
    status, _, body = await post_json(
        http, f"{stack.base_url}{LOOKUP}", {"domains": domains}, bearer(org["token"])
    )
    assert (status, body["code"]) == (422, "batch_too_large")
    status, _, _ = await post_json(
        http, f"{stack.base_url}{LOOKUP}", {"domains": domains[:-1]}, bearer(org["token"])
    )
    assert status == 202
    assert await _usage(stack, http, org["token"]) == cap + lookup_cap


# --- rate limits and quota -----------------------------------------------------------------


async def test_bulk_submissions_are_rate_limited_with_ietf_headers(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, "free")
    url = f"{stack.base_url}/api/v1/signals/batch"
    limit = DEFAULT_PLANS["free"].bulk_submissions_per_minute
    for _ in range(limit):
        status, headers, _ = await post_json(
            http, url, {"requests": [{"domain": "a.test"}]}, bearer(org["token"])
        )
        assert status == 207
        assert "RateLimit-Policy" in headers

    status, headers, body = await post_json(
        http, url, {"requests": [{"domain": "a.test"}]}, bearer(org["token"])
    )

    assert (status, body["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1
    assert f'"bulk";q={limit};w=60' in headers["RateLimit-Policy"]
    assert '"bulk";r=0' in headers["RateLimit"]
    assert await _usage(stack, http, org["token"]) == limit


async def test_a_batch_that_would_pass_the_monthly_quota_is_rejected_whole(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, "tiny")
    url = f"{stack.base_url}/api/v1/signals/batch"
    three = {"requests": [{"domain": "a.test"}] * 3}

    assert (await post_json(http, url, three, bearer(org["token"])))[0] == 207
    status, _, body = await post_json(http, url, three, bearer(org["token"]))
    assert (status, body["code"]) == (429, "quota_exceeded")
    assert await _usage(stack, http, org["token"]) == 3

    status, _, body = await post_json(
        http,
        f"{stack.base_url}{LOOKUP}",
        {"domains": ["a.test", "b.test", "c.test"]},
        bearer(org["token"]),
    )
    assert (status, body["code"]) == (429, "quota_exceeded")
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 1000
    assert (
        await post_json(http, url, {"requests": [{"domain": "a.test"}] * 2}, bearer(org["token"]))
    )[0] == 207
    assert await _usage(stack, http, org["token"]) == 5
    assert stack.cli("admin", "show-org", org["org_id"])["usage"]["units"] == 5


# --- idempotency ----------------------------------------------------------------------------


async def test_replay_returns_the_original_response_and_meters_once(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    headers = {**bearer(org["token"]), "Idempotency-Key": "key-1"}
    url = f"{stack.base_url}{LOOKUP}"

    first = await post_raw(
        http, url, {"domains": ["plain.test", "wp.test"], "recompute": False}, headers
    )
    # The same body with other key order and spacing: canonical JSON is equal.
    raw = b'{ "recompute" : false,\n  "domains": ["plain.test","wp.test"] }'
    async with http.post(
        url, data=raw, headers={**headers, "Content-Type": "application/json"}
    ) as r:
        again = (r.status, CIMultiDict(r.headers), await r.read())

    assert first[0] == again[0] == 202
    assert first[2] == again[2]
    assert first[1]["Location"] == again[1]["Location"]
    assert first[1]["Idempotency-Replayed"] == "false"
    assert again[1]["Idempotency-Replayed"] == "true"
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 998
    assert await _usage(stack, http, org["token"]) == 2

    status, _, body = await post_json(http, url, {"domains": ["other.test"]}, headers)
    assert (status, body["code"]) == (422, "idempotency_key_reuse")

    # Keys belong to an organisation: another one may use the same key freely.
    stranger = _org(stack)
    status, _, _ = await post_json(
        http,
        url,
        {"domains": ["other.test"]},
        {**bearer(stranger["token"]), "Idempotency-Key": "key-1"},
    )
    assert status == 202


async def test_error_responses_replay_too(stack: RunningStack, http: aiohttp.ClientSession) -> None:
    org = _org(stack)
    headers = {**bearer(org["token"]), "Idempotency-Key": "bad-1"}
    url = f"{stack.base_url}{LOOKUP}"
    first = await post_raw(http, url, {"domains": []}, headers)
    again = await post_raw(http, url, {"domains": []}, headers)
    assert first[0] == again[0] == 422
    assert first[2] == again[2]
    assert again[1]["Idempotency-Replayed"] == "true"


async def test_concurrent_requests_with_one_key_execute_once(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, "enterprise")
    headers = {**bearer(org["token"]), "Idempotency-Key": "burst"}
    body = {"requests": [{"domain": "a.test"}, {"domain": "b.test"}]}
    url = f"{stack.base_url}/api/v1/signals/batch"

    answers = await asyncio.gather(*(post_json(http, url, body, headers) for _ in range(50)))

    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {207, 409}
    originals = [h for s, h, _ in answers if s == 207 and h["Idempotency-Replayed"] == "false"]
    assert len(originals) == 1
    conflicts = [b for s, _, b in answers if s == 409]
    assert all(b["code"] == "idempotency_conflict" for b in conflicts)
    assert await _usage(stack, http, org["token"]) == 2


async def test_concurrent_batches_never_overdraw_the_balance(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack, "enterprise", credits=30)
    url = f"{stack.base_url}{LOOKUP}"
    # A domain that is looked up successfully: no refund can pay for a later batch.
    body = {"domains": ["plain.test"]}

    answers = await asyncio.gather(
        *(post_json(http, url, body, bearer(org["token"])) for _ in range(100))
    )

    statuses = [status for status, _, _ in answers]
    assert statuses.count(202) == 30
    assert statuses.count(402) == 70
    shown = stack.cli("admin", "show-org", org["org_id"])
    assert shown["usage"]["units"] == 30
    assert shown["credit_balance"] == 0
    charges = [line for line in shown["ledger"] if line["kind"] == "charge"]
    assert min(line["balance_after"] for line in charges) >= 0
