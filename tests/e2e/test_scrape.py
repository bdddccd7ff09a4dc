"""Scrape batches (seed 004, contract 3.5) through Envoy: the seed's bodies, extraction
from real pages served on 127.0.0.1, per-batch parallelism, caps, failures, validation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import jsonschema
import pytest
from tests.support import scrape_pages
from tests.support.api import bearer, get_json, post_json
from tests.support.sites import SiteServer
from tests.support.stack import RunningStack

BATCH = "/v1/scrape/batch"
SEED_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "content": {"type": "string"}},
}


def _org(stack: RunningStack, plan: str = "pro", credits: int = 200) -> dict[str, Any]:
    return stack.cli(
        "admin", "create-org", "--name", "s", "--plan", plan, "--credits", str(credits)
    )


async def _submit(
    stack: RunningStack, http: aiohttp.ClientSession, token: str, body: dict[str, Any]
) -> tuple[int, Any]:
    status, _, answer = await post_json(
        http, f"{stack.base_url}{BATCH}", body, {"X-API-Key": token}
    )
    return status, answer


async def _finished(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    token: str,
    batch_id: str,
    timeout_s: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, batch = await get_json(http, f"{stack.base_url}{BATCH}/{batch_id}", bearer(token))
        assert status == 200, batch
        if batch["progress"]["pending"] == 0 or time.monotonic() > deadline:
            return dict(batch)
        await asyncio.sleep(0.2)


async def _job(
    stack: RunningStack, http: aiohttp.ClientSession, token: str, job_id: str
) -> dict[str, Any]:
    status, job = await get_json(http, f"{stack.base_url}/v1/scrape/jobs/{job_id}", bearer(token))
    assert status == 200, job
    return dict(job)


async def test_the_seed_request_answers_the_seed_body(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    urls = ["http://blog.test/page1", "http://blog.test/page2", "http://blog.test/page3"]
    body = {
        "urls": urls,
        "schema": SEED_SCHEMA,
        "options": {"max_items_per_url": 50, "parallel_jobs": 3},
    }

    status, batch = await _submit(stack, http, org["token"], body)

    assert status == 200
    assert list(batch) == ["batch_id", "total_urls", "jobs", "progress", "created_at"]
    assert batch["batch_id"].startswith("batch_")
    assert batch["total_urls"] == 3
    assert [j["url"] for j in batch["jobs"]] == urls
    assert all(
        set(j) == {"job_id", "url", "status"} and j["status"] == "pending" for j in batch["jobs"]
    )
    assert batch["progress"] == {
        "completed": 0,
        "failed": 0,
        "pending": 3,
        "total_items_extracted": 0,
    }
    assert batch["created_at"].endswith("Z")

    done = await _finished(stack, http, org["token"], batch["batch_id"])
    assert done["progress"]["completed"] == 3
    job = await _job(stack, http, org["token"], done["jobs"][0]["job_id"])
    assert job["status"] == "completed"
    assert job["error"] is None
    assert job["items"]
    for item in job["items"]:
        jsonschema.validate(item, SEED_SCHEMA)
    assert job["started_at"] is not None
    assert job["finished_at"] is not None
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 197


@pytest.mark.parametrize(
    ("host", "schema_name"),
    [
        ("shop.test", "PRODUCT_SCHEMA"),
        ("table.test", "TABLE_SCHEMA"),
        ("cards.test", "CARD_SCHEMA"),
        ("news.test", "ARTICLE_LIST_SCHEMA"),
    ],
)
async def test_items_are_extracted_and_valid_against_the_schema(
    stack: RunningStack, http: aiohttp.ClientSession, host: str, schema_name: str
) -> None:
    org = _org(stack)
    schema = getattr(scrape_pages, schema_name)
    status, batch = await _submit(
        stack, http, org["token"], {"urls": [f"http://{host}/"], "schema": schema}
    )
    assert status == 200

    done = await _finished(stack, http, org["token"], batch["batch_id"])
    job = await _job(stack, http, org["token"], done["jobs"][0]["job_id"])

    assert job["status"] == "completed", job
    assert job["items"], job
    for item in job["items"]:
        jsonschema.validate(item, schema)
    assert done["progress"]["total_items_extracted"] == len(job["items"]) == job["items_count"]


async def test_item_caps_hold_per_url_and_across_the_batch(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    body = {
        "urls": ["http://shop.test/a", "http://shop.test/b", "http://shop.test/c"],
        "schema": scrape_pages.PRODUCT_SCHEMA,
        "options": {"max_items_per_url": 2, "max_total_items": 5, "parallel_jobs": 3},
    }
    _, batch = await _submit(stack, http, org["token"], body)
    done = await _finished(stack, http, org["token"], batch["batch_id"])

    counts = [
        (await _job(stack, http, org["token"], j["job_id"]))["items_count"] for j in done["jobs"]
    ]
    assert all(count <= 2 for count in counts)
    assert sum(counts) == done["progress"]["total_items_extracted"] == 5


async def test_date_filter_keeps_items_in_range(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    body = {
        "urls": ["http://news.test/"],
        "schema": scrape_pages.ARTICLE_LIST_SCHEMA,
        "options": {
            "date_filter": {"field": "published_at", "from": "2024-02-01", "to": "2024-03-31"}
        },
    }
    _, batch = await _submit(stack, http, org["token"], body)
    done = await _finished(stack, http, org["token"], batch["batch_id"])
    job = await _job(stack, http, org["token"], done["jobs"][0]["job_id"])

    assert job["items"]
    assert all("2024-02-01" <= item["published_at"][:10] <= "2024-03-31" for item in job["items"])
    _, unfiltered = await _submit(
        stack,
        http,
        org["token"],
        {"urls": ["http://news.test/"], "schema": scrape_pages.ARTICLE_LIST_SCHEMA},
    )
    everything = await _finished(stack, http, org["token"], unfiltered["batch_id"])
    assert everything["progress"]["total_items_extracted"] > len(job["items"])


async def test_parallel_jobs_bound_concurrent_fetches_of_one_batch(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    body = {
        "urls": [f"http://busy.test/{i}" for i in range(20)],
        "schema": SEED_SCHEMA,
        "options": {"parallel_jobs": 2},
    }
    _, batch = await _submit(stack, http, org["token"], body)
    done = await _finished(stack, http, org["token"], batch["batch_id"])

    assert done["progress"]["completed"] == 20
    assert sites.peak["busy.test"] == 2


async def test_failed_jobs_do_not_stop_the_batch(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    body = {
        "urls": [
            "http://slow.test/",
            "http://api.test/",
            "http://gone.test/",
            "http://blog.test/",
            "http://nowhere-x.test/",
        ],
        "schema": SEED_SCHEMA,
        "options": {"timeout_per_url": 1, "parallel_jobs": 5},
    }
    _, batch = await _submit(stack, http, org["token"], body)
    done = await _finished(stack, http, org["token"], batch["batch_id"])

    statuses = [j["status"] for j in done["jobs"]]
    assert statuses == ["failed", "failed", "failed", "completed", "failed"]
    errors = [(await _job(stack, http, org["token"], j["job_id"]))["error"] for j in done["jobs"]]
    assert errors[0].startswith("timeout")
    assert errors[1].startswith("not_html")
    assert errors[2].startswith("http_status")
    assert errors[3] is None
    assert errors[4]
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 199


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"urls": [f"http://a.test/{i}" for i in range(51)], "schema": SEED_SCHEMA},
            "urls must have at most 50",
        ),
        ({"urls": [], "schema": SEED_SCHEMA}, "urls must be a non-empty array"),
        (
            {"urls": ["ftp://a.test/x"], "schema": SEED_SCHEMA},
            "urls[0] must be an http or https URL",
        ),
        ({"urls": ["http://a.test/"]}, "schema must be a JSON Schema object"),
        (
            {"urls": ["http://a.test/"], "schema": {"type": "nonsense"}},
            "schema is not a valid JSON Schema",
        ),
        (
            {"urls": ["http://a.test/"], "schema": SEED_SCHEMA, "organization_id": "org_other"},
            "organization_id must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"max_items_per_url": 0},
            },
            "options.max_items_per_url must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"max_items_per_url": 501},
            },
            "options.max_items_per_url must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"max_total_items": 5001},
            },
            "options.max_total_items must be",
        ),
        (
            {"urls": ["http://a.test/"], "schema": SEED_SCHEMA, "options": {"parallel_jobs": 11}},
            "options.parallel_jobs must be",
        ),
        (
            {"urls": ["http://a.test/"], "schema": SEED_SCHEMA, "options": {"parallel_jobs": 0}},
            "options.parallel_jobs must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"timeout_per_url": 301},
            },
            "options.timeout_per_url must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"timeout_per_url": "30"},
            },
            "options.timeout_per_url must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"llm_mode": "creative"},
            },
            "options.llm_mode must be",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"date_filter": {"from": "2024-01-01"}},
            },
            "options.date_filter.field",
        ),
        (
            {
                "urls": ["http://a.test/"],
                "schema": SEED_SCHEMA,
                "options": {"date_filter": {"field": "d", "to": "soon"}},
            },
            "options.date_filter.to must be",
        ),
        (
            {"urls": ["http://a.test/"], "schema": SEED_SCHEMA, "options": {"turbo": True}},
            "unknown field: options.turbo",
        ),
    ],
)
async def test_validation_errors_are_422_naming_the_field(
    stack: RunningStack, http: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    org = _org(stack)
    status, answer = await _submit(stack, http, org["token"], body)
    assert status == 422, answer
    assert answer["error"].startswith(message)
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 200


async def test_another_organisations_batch_and_jobs_are_not_found(
    stack: RunningStack, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    _, batch = await _submit(
        stack, http, org["token"], {"urls": ["http://blog.test/"], "schema": SEED_SCHEMA}
    )
    other = _org(stack)
    status, _ = await get_json(
        http, f"{stack.base_url}{BATCH}/{batch['batch_id']}", bearer(other["token"])
    )
    assert status == 404
    status, _ = await get_json(
        http,
        f"{stack.base_url}/v1/scrape/jobs/{batch['jobs'][0]['job_id']}",
        bearer(other["token"]),
    )
    assert status == 404
    status, _ = await get_json(http, f"{stack.base_url}{BATCH}/not-a-batch", bearer(org["token"]))
    assert status == 404
