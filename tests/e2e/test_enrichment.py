"""Enrichment operations (seed 002, contract 3.3) through Envoy: camelCase bare arrays,
real crawling of sites served on 127.0.0.1, reuse, credits, timeouts and errors."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest
from tests.support.api import bearer
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

TRIGGER = "/api/v1/operations/enrichment/batch"
QUERY = "/api/v1/operations/enrichment/batch/query"
SEED_KEYS = [
    "id", "createdAt", "updatedAt", "entityId", "entityType", "field", "status", "error",
    "dataFound", "createdBy", "orgId", "globalEnrichmentId", "creditTransactionId",
]  # fmt: skip
TERMINAL = {"finished", "failed", "timeout"}


def _org(stack: RunningStack, credits: int = 100) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "e", "--plan", "pro", "--credits", str(credits)
    )


async def _post(
    http: aiohttp.ClientSession, stack: RunningStack, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any, bytes]:
    async with http.post(f"{stack.base_url}{path}", json=body, headers=headers) as response:
        raw = await response.read()
        return response.status, await response.json(content_type=None), raw


async def _until_terminal(
    http: aiohttp.ClientSession, stack: RunningStack, tasks: list[dict[str, Any]], token: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        status, records, _ = await _post(http, stack, QUERY, {"tasks": tasks}, bearer(token))
        assert status == 200, records
        if all(r["status"] in TERMINAL for r in records) or time.monotonic() > deadline:
            return list(records)
        await asyncio.sleep(0.2)


async def test_trigger_then_query_crawls_real_sites_in_the_seed_shape(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    tasks = [
        {"entityId": "acme.test", "field": "emails"},
        {"entityId": "https://acme.test/", "field": "phones", "entityType": "company"},
        {"entityId": "plain.test", "field": "emails"},
        {"entityId": "http://people.test/jane", "field": "summary"},
    ]

    status, created, raw = await _post(http, stack, TRIGGER, {"tasks": tasks}, bearer(org["token"]))

    assert status == 202, created
    assert isinstance(created, list)
    assert len(created) == 4
    for record in created:
        assert list(record) == SEED_KEYS
        assert record["status"] == "pending"
        assert record["dataFound"] is None
        assert record["error"] is None
        assert record["globalEnrichmentId"] is None
        assert record["orgId"] == org["org_id"]
        assert record["createdBy"] == org["user_id"]
        assert record["creditTransactionId"].startswith("credit_")
        assert record["createdAt"].endswith("Z")
        uuid.UUID(record["entityId"])
    assert b'"dataFound":null' in raw
    assert [r["field"] for r in created] == ["emails", "phones", "emails", "summary"]
    assert [r["entityType"] for r in created] == ["company", "company", "company", "person"]
    assert created[0]["entityId"] == created[1]["entityId"]

    # Query by UUID, by domain and by URL: one shape, request order.
    query = [
        {"entityId": created[3]["entityId"], "field": "summary"},
        {"entityId": "acme.test", "field": "emails"},
        {"entityId": "acme.test", "field": "phones"},
        {"entityId": "plain.test", "field": "emails"},
    ]
    done = await _until_terminal(http, stack, query, org["token"])

    assert [r["id"] for r in done] == [
        created[3]["id"],
        created[0]["id"],
        created[1]["id"],
        created[2]["id"],
    ]
    assert [(r["status"], r["dataFound"]) for r in done] == [
        ("finished", True), ("finished", True), ("finished", True), ("finished", False),
    ]  # fmt: skip
    assert all(r["globalEnrichmentId"].startswith("global_") for r in done)

    async with http.get(
        f"{stack.base_url}/api/v1/operations/enrichment/{created[0]['id']}",
        headers=bearer(org["token"]),
    ) as response:
        assert response.status == 200
        one = await response.json()
    assert one["data"] == ["hello@acme.test", "sales@acme.test"]
    assert list(one)[: len(SEED_KEYS)] == SEED_KEYS
    shown = stack.cli("admin", "show-org", org["org_id"])
    assert shown["credit_balance"] == 96
    assert shown["usage"]["units"] == 4


async def test_query_omits_tasks_without_records_and_is_read_only(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    await _post(
        http,
        stack,
        TRIGGER,
        {"tasks": [{"entityId": "acme.test", "field": "summary"}]},
        bearer(org["token"]),
    )
    query = {
        "tasks": [
            {"entityId": "550e8400-e29b-41d4-a716-446655440000", "field": "phones"},
            {"entityId": "acme.test", "field": "summary"},
            {"entityId": "never-named.test", "field": "emails"},
        ]
    }

    status, records, _ = await _post(http, stack, QUERY, query, bearer(org["token"]))

    assert status == 200
    assert [r["field"] for r in records] == ["summary"]
    shown = stack.cli("admin", "show-org", org["org_id"])
    assert (shown["credit_balance"], shown["usage"]["units"]) == (99, 1)


async def test_fresh_fields_are_reused_within_and_across_organisations(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    task = [{"entityId": "acme.test", "field": "socials"}]
    _, first, _ = await _post(http, stack, TRIGGER, {"tasks": task}, bearer(org["token"]))
    (finished,) = await _until_terminal(http, stack, task, org["token"])
    assert finished["dataFound"] is True
    hits = sites.hits["acme.test"]

    status, again, _ = await _post(http, stack, TRIGGER, {"tasks": task}, bearer(org["token"]))
    assert status == 202
    assert again[0]["id"] == first[0]["id"]
    assert again[0]["status"] == "finished"
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 99

    other = _org(stack)
    _, theirs, _ = await _post(http, stack, TRIGGER, {"tasks": task}, bearer(other["token"]))
    (reused,) = await _until_terminal(http, stack, task, other["token"])
    assert reused["id"] == theirs[0]["id"] != first[0]["id"]
    assert reused["globalEnrichmentId"] == finished["globalEnrichmentId"]
    assert sites.hits["acme.test"] == hits


async def test_unreachable_sites_fail_and_are_refunded(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    task = [{"entityId": "nowhere-at-all.test", "field": "emails"}]
    await _post(http, stack, TRIGGER, {"tasks": task}, bearer(org["token"]))

    (failed,) = await _until_terminal(http, stack, task, org["token"])

    assert failed["status"] == "failed"
    assert failed["dataFound"] is None
    assert failed["error"]
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 100


async def test_a_hanging_site_times_out_through_the_sweeper(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    task = [{"entityId": "slow.test", "field": "summary"}]
    await _post(http, stack, TRIGGER, {"tasks": task}, bearer(org["token"]))

    (record,) = await _until_terminal(http, stack, task, org["token"])

    assert record["status"] == "timeout"
    assert record["dataFound"] is None
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 100


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (TRIGGER, {"tasks": []}, "tasks must be a non-empty array"),
        (QUERY, {"tasks": []}, "tasks must be a non-empty array"),
        (
            TRIGGER,
            {"tasks": [{"entityId": "a.test", "field": "emails"}] * 201},
            "tasks must have at most 200",
        ),
        (
            QUERY,
            {"tasks": [{"entityId": "a.test", "field": "emails"}] * 201},
            "tasks must have at most 200",
        ),
        (TRIGGER, {"tasks": [{"entityId": "a.test", "field": "emails", "x": 1}]}, "unknown field"),
        (
            QUERY,
            {"tasks": [{"entityId": "a.test", "field": "shoe_size"}]},
            "tasks[0].field must be one of",
        ),
        (TRIGGER, {"tasks": "x"}, "tasks must be a non-empty array"),
        (
            TRIGGER,
            {"tasks": [{"entityId": "a.test", "field": "emails"}], "extra": True},
            "unknown field",
        ),
    ],
)
async def test_validation_errors_are_400_in_the_seed_shape(
    stack: RunningStack, http: aiohttp.ClientSession, path: str, body: Any, message: str
) -> None:
    org = _org(stack)
    status, answer, _ = await _post(http, stack, path, body, bearer(org["token"]))
    assert status == 400
    assert answer["error"] == "VALIDATION_ERROR"
    assert answer["message"].startswith(message)
    assert set(answer) == {"error", "message"}


async def test_malformed_json_unauthorized_and_missing_organization(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    headers = {**bearer(org["token"]), "Content-Type": "application/json"}
    async with http.post(f"{stack.base_url}{QUERY}", data=b"{nope", headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "VALIDATION_ERROR"

    status, answer, _ = await _post(
        http, stack, QUERY, {"tasks": [{"entityId": "a.test", "field": "emails"}]}, {}
    )
    assert (status, answer["error"]) == (401, "UNAUTHORIZED")

    unbound = stack.cli("admin", "create-token", "--org", org["org_id"], "--unbound")["token"]
    status, answer, _ = await _post(
        http, stack, QUERY, {"tasks": [{"entityId": "a.test", "field": "emails"}]}, bearer(unbound)
    )
    assert status == 400
    assert answer["message"] == "Organization ID is missing"

    reader = stack.cli(
        "admin", "create-token", "--org", org["org_id"], "--scopes", "enrichment.read"
    )["token"]
    status, answer, _ = await _post(
        http, stack, TRIGGER, {"tasks": [{"entityId": "a.test", "field": "emails"}]}, bearer(reader)
    )
    assert (status, answer["error"]) == (403, "INSUFFICIENT_SCOPE")


async def test_technologies_and_address_fields(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    tasks = [
        {"entityId": "acme.test", "field": "technologies"},
        {"entityId": "acme.test", "field": "address"},
    ]
    _, created, _ = await _post(http, stack, TRIGGER, {"tasks": tasks}, bearer(org["token"]))
    await _until_terminal(http, stack, tasks, org["token"])

    data = {}
    for record in created:
        async with http.get(
            f"{stack.base_url}/api/v1/operations/enrichment/{record['id']}",
            headers=bearer(org["token"]),
        ) as response:
            data[record["field"]] = (await response.json())["data"]

    assert "Nginx" in {t["name"] for t in data["technologies"]}
    assert data["address"] == {
        "streetAddress": "1 Canyon Road",
        "addressLocality": "Desert City",
        "addressRegion": "AZ",
        "postalCode": "85001",
        "addressCountry": "US",
    }


async def test_trigger_honours_idempotency_keys(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    headers = {**bearer(org["token"]), "Idempotency-Key": "enrich-once"}
    body = {"tasks": [{"entityId": "people.test", "field": "emails"}]}

    first = await _post(http, stack, TRIGGER, body, headers)
    again = await _post(http, stack, TRIGGER, body, headers)

    assert first[0] == again[0] == 202
    assert first[2] == again[2]
    assert stack.cli("admin", "show-org", org["org_id"])["usage"]["units"] == 1
