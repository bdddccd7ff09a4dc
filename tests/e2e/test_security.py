"""No one let in: every route that names a resource answers 404 to another organisation,
routes that list show only the caller's own, tokens are stored hashed and never logged.

The routes come from the served OpenAPI document, so a new route with a path parameter
fails here until the test knows how to make one of its resources."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup, post_json
from tests.support.faults import fetch
from tests.support.openapi import operations
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import RunningStack

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def document(stack: RunningStack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.base_url}/openapi.json") as r:
        assert r.status == 200
        return dict(await r.json())


async def _post(http: aiohttp.ClientSession, url: str, body: Any, token: str) -> Any:
    status, _, answer = await post_json(http, url, body, bearer(token))
    assert status in (200, 201, 202), (url, status, answer)
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def victim(stack: RunningStack, receiver: Receiver) -> dict[str, Any]:
    """An organisation with one resource of every kind; `ids` maps each route's path
    parameter to the id of one of its resources."""
    org = stack.cli("admin", "create-org", "--name", "victim", "--plan", "pro", "--credits", "100")
    token = org["token"]
    base = stack.base_url
    async with aiohttp.ClientSession() as http:
        lookup = await _post(
            http,
            f"{base}/api/v1/bulk/lookup",
            {"domains": ["plain.test"], "list_id": 4242, "webhook_url": receiver.url("victim")},
            token,
        )
        await poll_lookup(http, base, lookup["id"], token)
        [record] = await _post(
            http,
            f"{base}/api/v1/operations/enrichment/batch",
            {"tasks": [{"entityId": "acme.test", "field": "emails"}]},
            token,
        )
        scrape = await _post(
            http,
            f"{base}/v1/scrape/batch",
            {"urls": ["http://blog.test/"], "schema": SCHEMA},
            token,
        )
        radar = await _post(
            http,
            f"{base}/v1/radars/company",
            {"domain": f"{uuid.uuid4().hex[:8]}.test", "radar_type": "technology_changes"},
            token,
        )
        bulk = await _post(
            http,
            f"{base}/v1/radars/bulk",
            {
                "webhook_url": receiver.url("victim-bulk"),
                "radars": [{"domain": "acme.test", "radar_type": "website_changes"}],
            },
            token,
        )
        deadline = time.monotonic() + 30
        while True:
            _, listed = await get_json(
                http, f"{base}/api/v1/webhooks/deliveries?batch_id={lookup['id']}", bearer(token)
            )
            if listed["deliveries"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    delivery = listed["deliveries"][0]["id"]
    ids = {
        "/api/v1/bulk/lookup/{id}": {"id": lookup["id"]},
        "/api/v1/lists/{list_id}": {"list_id": 4242},
        "/api/v1/operations/enrichment/{id}": {"id": record["id"]},
        "/v1/scrape/batch/{batch_id}": {"batch_id": scrape["batch_id"]},
        "/v1/scrape/jobs/{job_id}": {"job_id": scrape["jobs"][0]["job_id"]},
        "/api/v1/webhooks/deliveries/{delivery_id}/redeliver": {"delivery_id": delivery},
        "/v1/radars/{id}": {"id": radar["id"]},
        "/v1/radars/bulk/{bulk_id}": {"bulk_id": bulk["bulk_id"]},
        "/v1/radars/{id}/deactivate": {"id": radar["id"]},
        "/api/v1/batches/{batch_id}": {"batch_id": scrape_batch_number(scrape["batch_id"])},
        "/api/v1/batches/{batch_id}/cancel": {"batch_id": scrape_batch_number(scrape["batch_id"])},
        "/api/v1/batches/{batch_id}/retry": {"batch_id": lookup["id"]},
    }
    return {**org, "ids": ids, "radar": radar, "lookup": lookup, "delivery": delivery}


def scrape_batch_number(batch_id: str) -> int:
    return int(batch_id.removeprefix("batch_"))


def _with_ids(path: str, values: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


async def test_every_route_naming_a_resource_is_404_for_another_organisation(
    stack: RunningStack, document: dict[str, Any], victim: dict[str, Any]
) -> None:
    intruder = stack.cli(
        "admin", "create-org", "--name", "intruder", "--plan", "pro", "--credits", "100"
    )
    checked: list[str] = []
    async with aiohttp.ClientSession() as http:
        for op in operations(document):
            if "{" not in op.path:
                continue
            assert op.path in victim["ids"], f"no resource of another org known for {op.path}"
            url = f"{stack.base_url}{_with_ids(op.path, victim['ids'][op.path])}"
            async with http.request(
                op.method.upper(),
                url,
                json={} if op.method == "post" else None,
                headers=bearer(intruder["token"]),
            ) as response:
                body = await response.json(content_type=None)
                assert response.status == 404, (op.method, op.path, response.status, body)
            # The owner gets the same resource (the 404 is about the tenant, not the id).
            if op.method == "get":
                status, body = await get_json(http, url, bearer(victim["token"]))
                assert status == 200, (op.path, status, body)
            checked.append(f"{op.method.upper()} {op.path}")
        # Nothing the intruder tried changed the victim's resources.
        status, radar = await get_json(
            http, f"{stack.base_url}/v1/radars/{victim['radar']['id']}", bearer(victim["token"])
        )
        assert status == 200, radar
        assert radar["status"] == victim["radar"]["status"], radar  # not deactivated
    print(f"isolation: {len(checked)} routes answered 404 to another organisation: {checked}")
    assert len(checked) >= 12


async def test_listing_routes_show_only_the_callers_own(
    stack: RunningStack, document: dict[str, Any], victim: dict[str, Any]
) -> None:
    intruder = stack.cli(
        "admin", "create-org", "--name", "intruder", "--plan", "pro", "--credits", "100"
    )
    secrets = {str(victim["radar"]["id"]), str(victim["delivery"]), victim["org_id"]}
    async with aiohttp.ClientSession() as http:
        for op in operations(document):
            if op.method != "get" or "{" in op.path or op.path in ("/healthz", "/openapi.json"):
                continue
            url = f"{stack.base_url}{op.path}"
            if op.path == "/api/v1/webhooks/deliveries":
                url += f"?batch_id={victim['lookup']['id']}"
            status, body = await get_json(http, url, bearer(intruder["token"]))
            assert status in (200, 404), (op.path, status, body)
            text = json.dumps(body)
            assert not any(s in text for s in secrets), (op.path, body)


async def test_a_token_cannot_name_another_organisation(
    stack: RunningStack, http: aiohttp.ClientSession, victim: dict[str, Any]
) -> None:
    intruder = stack.cli(
        "admin", "create-org", "--name", "intruder", "--plan", "pro", "--credits", "100"
    )
    unbound = stack.cli("admin", "create-token", "--org", intruder["org_id"], "--unbound")
    headers = {**bearer(unbound["token"]), "X-Organization-Id": victim["org_id"]}
    status, body = await get_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup/{victim['lookup']['id']}", headers
    )
    assert (status, body["code"]) == (403, "organization_forbidden"), body
    # A bound token ignores the header: it acts for its own organisation only.
    headers = {**bearer(intruder["token"]), "X-Organization-Id": victim["org_id"]}
    status, body = await get_json(
        http, f"{stack.base_url}/api/v1/bulk/lookup/{victim['lookup']['id']}", headers
    )
    assert status == 404, body


async def test_tokens_are_stored_hashed_and_never_logged(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = stack.cli("admin", "create-org", "--name", "t", "--plan", "pro", "--credits", "10")
    other = stack.cli("admin", "create-token", "--org", org["org_id"])
    revoked = stack.cli("admin", "create-token", "--org", org["org_id"])
    stack.cli("admin", "revoke-token", revoked["token_id"])
    unknown = "bp_" + uuid.uuid4().hex + uuid.uuid4().hex
    url = f"{stack.base_url}/api/v1/bulk/lookup"
    body = {"domains": ["plain.test"]}
    for token, expected in ((org["token"], 202), (other["token"], 202)):
        for headers in (bearer(token), {"X-API-Key": token}):
            assert (await post_json(http, url, body, headers))[0] == expected
    for token in (revoked["token"], unknown):
        for headers in (bearer(token), {"X-API-Key": token}, {"Authorization": f"Basic {token}"}):
            status, _, answer = await post_json(http, url, body, headers)
            assert status == 401, answer
            assert token not in json.dumps(answer)

    rows = await fetch(
        stack.env["DATABASE_URL"],
        "SELECT id, token_hash FROM api_tokens WHERE org_id = $1",
        org["org_id"],
    )
    stored = {r["id"]: r["token_hash"] for r in rows}
    for issued in (org, other, revoked):
        assert stored[issued["token_id"]] == hashlib.sha256(issued["token"].encode()).hexdigest()
    dump = json.dumps(
        await fetch(
            stack.env["DATABASE_URL"],
            "SELECT * FROM api_tokens",
        ),
        default=str,
    )
    for issued in (org, other, revoked):
        assert issued["token"] not in dump

    await asyncio.sleep(1)  # let the services flush their logs
    logs = {
        path.name: path.read_text(errors="replace")
        for path in [*(stack.state_dir / "logs").glob("*.log"), stack.state_dir / "stack.log"]
        if path.exists()
    }
    assert set(logs) >= {"intake.log", "processor.log", "notifier.log", "gateway.log"}
    for token in (org["token"], other["token"], revoked["token"], unknown):
        leaked = [name for name, text in logs.items() if token in text]
        assert not leaked, f"a token appears in {leaked}"
