"""Bulk radar creation (seed 003) through the whole stack: 202, per-item webhooks with
the single-create bodies, one `bulk_completed`, polling that agrees with the webhooks."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from tests.support.api import bearer, get_json, post_json
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import RunningStack

BULK = "/v1/radars/bulk"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def _org(
    stack: RunningStack, receiver: Receiver, *, credits: int, plan: str = "enterprise"
) -> dict[str, Any]:
    org = stack.cli("admin", "create-org", "--name", "b", "--plan", plan, "--credits", str(credits))
    receiver.secrets.append(stack.cli("admin", "webhook-secret", org["org_id"])["secret"])
    return org


async def test_mixed_bulk_yields_the_right_events_and_polling_agrees(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver, credits=4)
    token = org["token"]
    status, _, existing = await post_json(
        http,
        f"{stack.base_url}/v1/radars/company",
        {"domain": "taken.test", "radar_type": "technology_changes"},
        bearer(token),
    )
    assert status == 201
    name = f"bulk-{uuid.uuid4().hex[:8]}"
    radars = [
        {"domain": "one.test", "radar_type": "technology_changes", "custom_fields": {"row": 0}},
        {"radar_type": "technology_changes", "custom_fields": {"row": 1}},  # no domain
        {"domain": "taken.test", "radar_type": "technology_changes", "custom_fields": {"row": 2}},
        {"radar_type": "industry_mentions", "keyword": "anvils", "custom_fields": {"row": 3}},
        {
            "profile_url": "http://people.test/jane",
            "domain": "acme.test",
            "radar_type": "profile_changes",
        },
        {
            "domain": "two.test",
            "radar_type": "website_changes",
            "custom_fields": {"row": 5},
        },  # unpaid
        {"radar_type": "weather_changes"},
    ]

    status, _, accepted = await post_json(
        http,
        f"{stack.base_url}{BULK}",
        {"webhook_url": receiver.url(name), "radars": radars},
        bearer(token),
    )

    assert status == 202, accepted
    assert accepted["bulk_id"].startswith("bulk_")
    assert accepted["summary"] == {"total": 7, "queued": 7}
    deadline = time.monotonic() + 60
    while (
        not any(r.body["event"] == "bulk_completed" for r in receiver.at(name))
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.2)
    got = receiver.at(name)
    assert all(r.verified for r in got)
    events = {r.body["item_index"]: r.body for r in got if "item_index" in r.body}
    completed = [r.body for r in got if r.body["event"] == "bulk_completed"]
    assert len(completed) == 1
    assert got[-1].body["event"] == "bulk_completed"

    assert events[0]["event"] == "radar_created"
    assert events[0]["custom_fields"] == {"row": 0}
    assert events[0]["data"]["domain"] == "one.test"
    assert events[0]["completed_at"] == events[0]["discovered_at"]
    assert (events[1]["event"], events[1]["code"]) == ("radar_failure", 400)
    assert [e["field"] for e in events[1]["errors"]] == ["domain"]
    assert (events[2]["code"], events[2]["conflicting_radar_id"]) == (409, existing["id"])
    assert events[3]["event"] == "radar_created"
    assert events[4]["event"] == "radar_created"
    assert events[4]["custom_fields"] is None
    assert (events[5]["code"], events[5]["message"]) == (402, "Insufficient balance")
    assert events[6]["code"] == 400

    summary = completed[0]
    assert (summary["created"], summary["failed"]) == (3, 4)
    assert sorted(summary["radars"], key=lambda p: p["item_index"]) == [events[i] for i in range(7)]

    # The same failure bodies as single create would answer.
    status, _, single = await post_json(
        http,
        f"{stack.base_url}/v1/radars/company",
        {"domain": "taken.test", "radar_type": "technology_changes"},
        bearer(token),
    )
    assert status == 409
    assert {
        k: events[2][k] for k in ("code", "message", "errors", "conflicting_radar_id")
    } == single

    status, polled = await get_json(
        http, f"{stack.base_url}{BULK}/{accepted['bulk_id']}", bearer(token)
    )
    assert status == 200
    assert polled["status"] == "completed"
    assert polled["radars"] == [events[i] for i in range(7)]
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 0


async def test_envelope_errors_are_400_and_the_bucket_is_per_minute(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    org = _org(stack, receiver, credits=10, plan="free")
    url = f"{stack.base_url}{BULK}"
    for body, message in [
        (
            {"radars": [{"domain": "a.test", "radar_type": "technology_changes"}]},
            "webhook_url is required",
        ),
        ({"webhook_url": receiver.url("x"), "radars": []}, "radars must be a non-empty array"),
        ({"webhook_url": "http://example.com/h", "radars": [{}]}, "webhook_url must use https"),
    ]:
        status, _, error = await post_json(http, url, body, bearer(org["token"]))
        assert (status, error["code"]) == (400, 400)
        assert error["message"].startswith(message)

    status, _, error = await post_json(
        http, url, {"webhook_url": receiver.url("x"), "radars": [{}]}, {}
    )
    assert status == 401

    answers = [
        await post_json(
            http, url, {"webhook_url": receiver.url("x"), "radars": [{}]}, bearer(org["token"])
        )
        for _ in range(3)
    ]
    status, headers, error = answers[-1]
    assert status == 429, [a[0] for a in answers]
    assert error["reason"] == "minute"
    assert int(headers["Retry-After"]) >= 1


def _mixed_250() -> tuple[list[Any], dict[str, list[int]], dict[int, list[str]]]:
    """250 bulk items, shuffled: 16 duplicates of the existing radars (4 per kind), 34
    invalid items and 200 valid ones of every kind. Returns the items, the indices of each
    category (`dup:<kind>`, `invalid`, `valid`) and each invalid item's failing fields."""
    duplicates = {
        "company": [
            {"domain": "plain.test", "radar_type": "technology_changes"},
            {"domain": "PLAIN.test", "radar_type": "technology_changes"},
            {"domain": "https://plain.test/", "radar_type": "technology_changes"},
            {"domain": "plain.test", "radar_type": "technology_changes", "filters": {"x": 1}},
        ],
        "contact": [
            {
                "profile_url": "http://people.test/existing" + suffix,
                "radar_type": "profile_changes",
                "domain": "people.test",
            }
            for suffix in ("", "/", "", "/")
        ],
        "keyword": [
            {"radar_type": "industry_mentions", "keyword": k}
            for k in ("existing-kw", "Existing-KW", "EXISTING-kw", "  existing-kw ")
        ],
        "news": [{"radar_type": "industry_news"}] * 4,
    }
    invalid: list[tuple[Any, list[str]]] = [
        ({"radar_type": "technology_changes"}, ["domain"]),
        ({"domain": "not a domain", "radar_type": "website_changes"}, ["domain"]),
        ({"domain": "ok.test", "radar_type": "technology_changes", "colour": "red"}, ["colour"]),
        (
            {"profile_url": "ftp://people.test/x", "radar_type": "profile_changes", "domain": "x"},
            ["domain", "profile_url"],
        ),
        ({"radar_type": "industry_mentions"}, ["keyword"]),
        ({"radar_type": "industry_job_openings", "keyword": ""}, ["keyword"]),
        ({"radar_type": "weather_changes", "domain": "plain.test"}, ["radar_type"]),
        (
            {"domain": "shop.test", "radar_type": "technology_changes", "filters": "all"},
            ["filters"],
        ),
        ("not an object", ["radar_type"]),
    ]
    valid: list[dict[str, Any]] = [
        {"domain": d, "radar_type": t}
        for d in ("shop.test", "blog.test", "acme.test", "api.test", "cards.test")
        for t in ("technology_changes", "website_changes")
    ]
    valid += [
        {
            "profile_url": f"http://people.test/p{i}",
            "radar_type": "profile_changes",
            "domain": "people.test",
        }
        for i in range(10)
    ]
    valid += [{"radar_type": "industry_mentions", "keyword": f"kw-{i}"} for i in range(90)]
    valid += [{"radar_type": "industry_job_openings", "keyword": f"job-{i}"} for i in range(90)]
    tagged: list[tuple[str, Any, list[str]]] = [
        (f"dup:{kind}", body, []) for kind, bodies in duplicates.items() for body in bodies
    ]
    tagged += [
        ("invalid", invalid[i % len(invalid)][0], invalid[i % len(invalid)][1]) for i in range(34)
    ]
    tagged += [("valid", body, []) for body in valid]
    assert len(tagged) == 250
    random.Random(250).shuffle(tagged)
    items: list[Any] = []
    categories: dict[str, list[int]] = defaultdict(list)
    fields: dict[int, list[str]] = {}
    for index, (category, body, failing) in enumerate(tagged):
        categories[category].append(index)
        if isinstance(body, dict):
            body = {**body, "custom_fields": {"row": index, "category": category}}
        items.append(body)
        if failing:
            fields[index] = failing
    return items, categories, fields


async def test_250_mixed_items_run_out_of_balance_and_webhooks_and_polling_agree(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    paid = 150  # the valid items the balance pays for; the other 50 are 402
    org = _org(stack, receiver, credits=4 + paid)
    token = org["token"]
    existing = {}
    for kind, route, body in [
        ("company", "company", {"domain": "plain.test", "radar_type": "technology_changes"}),
        (
            "contact",
            "contact",
            {
                "profile_url": "http://people.test/existing",
                "radar_type": "profile_changes",
                "domain": "people.test",
            },
        ),
        ("keyword", "industry", {"radar_type": "industry_mentions", "keyword": "existing-kw"}),
        ("news", "industry", {"radar_type": "industry_news"}),
    ]:
        status, _, radar = await post_json(
            http, f"{stack.base_url}/v1/radars/{route}", body, bearer(token)
        )
        assert status == 201, radar
        existing[kind] = radar["id"]
    items, categories, invalid_fields = _mixed_250()
    name = f"bulk250-{uuid.uuid4().hex[:8]}"

    status, _, accepted = await post_json(
        http,
        f"{stack.base_url}{BULK}",
        {"webhook_url": receiver.url(name), "radars": items},
        bearer(token),
    )

    assert status == 202, accepted
    assert accepted["summary"] == {"total": 250, "queued": 250}
    deadline = time.monotonic() + 90
    while (
        not any(r.body["event"] == "bulk_completed" for r in receiver.at(name))
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.2)
    got = receiver.at(name)
    assert all(r.verified for r in got)
    completed = [r for r in got if r.body["event"] == "bulk_completed"]
    assert len(completed) == 1, [r.webhook_id for r in completed]
    assert got[-1] is completed[0]
    # At least once per item; a copy would carry the same webhook-id and body.
    copies: dict[int, list[Any]] = defaultdict(list)
    for r in got[:-1]:
        copies[r.body["item_index"]].append(r)
    assert sorted(copies) == list(range(250))
    assert all(len({(c.webhook_id, str(c.body)) for c in cs}) == 1 for cs in copies.values())
    assert len({cs[0].webhook_id for cs in copies.values()} | {completed[0].webhook_id}) == 251
    events = {i: cs[0].body for i, cs in copies.items()}

    for i, event in events.items():
        assert event["bulk_id"] == accepted["bulk_id"]
        assert event["completed_at"] == event["discovered_at"]
        if isinstance(items[i], dict):
            assert event["custom_fields"] == items[i]["custom_fields"]
        else:
            assert event["custom_fields"] is None
    conflict_fields = {
        "company": "domain",
        "contact": "identifiers",
        "keyword": "keyword",
        "news": "radar_type",
    }
    for kind, field in conflict_fields.items():
        for i in categories[f"dup:{kind}"]:
            assert (events[i]["event"], events[i]["code"]) == ("radar_failure", 409), events[i]
            assert events[i]["conflicting_radar_id"] == existing[kind]
            assert [e["field"] for e in events[i]["errors"]] == [field]
    for i in categories["invalid"]:
        assert (events[i]["event"], events[i]["code"]) == ("radar_failure", 400), events[i]
        assert events[i]["message"] == "Validation error"
        assert sorted(e["field"] for e in events[i]["errors"]) == invalid_fields[i]
        assert "conflicting_radar_id" not in events[i]
    created = [i for i in categories["valid"] if events[i]["event"] == "radar_created"]
    unpaid = [i for i in categories["valid"] if i not in created]
    assert len(created) == paid
    for i in unpaid:
        assert events[i]["event"] == "radar_failure"
        assert {k: events[i].get(k) for k in ("code", "message", "errors", "data")} == {
            "code": 402,
            "message": "Insufficient balance",
            "errors": [],
            "data": None,
        }
    for i in created:
        data, item = events[i]["data"], items[i]
        assert data["radar_type"] == item["radar_type"]
        assert data["status"] == "active"
        for key in ("keyword", "profile_url"):
            if key in item:
                assert data[key] == item[key]
        if "profile_url" not in item and "domain" in item:
            assert data["domain"] == item["domain"]
    assert len({events[i]["data"]["id"] for i in created}) == paid

    summary = completed[0].body
    assert (summary["created"], summary["failed"]) == (paid, 250 - paid)
    assert sorted(summary["radars"], key=lambda p: p["item_index"]) == [
        events[i] for i in range(250)
    ]

    status, polled = await get_json(
        http, f"{stack.base_url}{BULK}/{accepted['bulk_id']}", bearer(token)
    )
    assert status == 200
    assert polled["status"] == "completed"
    assert polled["radars"] == [events[i] for i in range(250)]
    assert stack.cli("admin", "show-org", org["org_id"])["credit_balance"] == 0

    # The shared stack's monitor would re-check these radars every second from now on.
    for radar_id in [*existing.values(), *(events[i]["data"]["id"] for i in created)]:
        status, _, _ = await post_json(
            http, f"{stack.base_url}/v1/radars/{radar_id}/deactivate", {}, bearer(token)
        )
        assert status == 200
