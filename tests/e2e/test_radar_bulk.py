"""Bulk radar creation (seed 003) through the whole stack: 202, per-item webhooks with
the single-create bodies, one `bulk_completed`, polling that agrees with the webhooks."""

from __future__ import annotations

import asyncio
import time
import uuid
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
