"""Single radar creation (seed 003, contract 3.4) through Envoy: per-type bodies, errors
with one entry per failing field, 402 without a charge, 409 with the conflicting id."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from tests.support.api import bearer, get_json, post_json
from tests.support.sites import PERSON_PAGE, WORDPRESS_PAGE, SiteServer, atom_feed, rss_feed
from tests.support.stack import RunningStack

from batchplane.api.events.v1 import events_pb2


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
    checks = sites.hits.get("watched.test", 0)
    status, radar = await _create(
        stack,
        http,
        org["token"],
        "company",
        {"domain": "watched.test", "radar_type": "technology_changes"},
    )
    assert status == 201
    await _fetched(sites, "watched.test", after=checks, times=1)  # the baseline
    deadline = time.monotonic() + 30

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
    # Intelligence about the domain lists the radar watching it.
    _, _, answer = await post_json(
        http,
        f"{stack.base_url}/api/v1/intelligence/batch",
        {"requests": [{"domain": "watched.test"}]},
        bearer(org["token"]),
    )
    assert answer["data"][0]["data"]["radars"] == [radar]
    announced = await _signal_events(stack, radar["id"], len(found))
    assert {(e.org_id, e.signal_detected.domain) for e in announced} == {
        (org["org_id"], "watched.test")
    }
    assert sorted(orjson.loads(e.signal_detected.data_json)["technology"] for e in announced) == (
        sorted(s["data"]["technology"] for s in found)
    )


async def test_a_contact_radar_records_changes_of_its_profile_page(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    checks = sites.hits.get("profile.test", 0)
    status, radar = await _create(
        stack,
        http,
        org["token"],
        "contact",
        {"profile_url": "http://profile.test/jane", "domain": "acme.test", "radar_type": "profile_changes"},
    )  # fmt: skip
    assert status == 201
    # Two fetches: the second is of a round that began after the first one stored the baseline.
    await _fetched(sites, "profile.test", after=checks, times=2)
    assert await _signals(stack, http, org["token"], "acme.test") == []

    sites.sites["profile.test"].body = PERSON_PAGE.replace(
        "<title>Jane Roe</title>", "<title>Jane Roe, CTO</title>"
    )
    found = await _signals(stack, http, org["token"], "acme.test", wait=True)

    assert [s["type"] for s in found] == ["profile_changed"]
    assert found[0]["data"]["radar_id"] == radar["id"]
    assert found[0]["data"]["changes"] == {
        "title": {"before": "Jane Roe", "after": "Jane Roe, CTO"}
    }
    # Only the radar's organisation sees its profile signals.
    other = _org(stack)
    assert await _signals(stack, http, other["token"], "acme.test") == []
    (event,) = await _signal_events(stack, radar["id"], 1)
    assert (event.signal_detected.type, event.signal_detected.radar_type) == (
        "profile_changed",
        "profile_changes",
    )


async def test_keyword_radars_report_new_feed_entries_that_mention_their_keyword(
    stack: RunningStack, sites: SiteServer, http: aiohttp.ClientSession
) -> None:
    org = _org(stack)
    checks = {host: sites.hits.get(host, 0) for host in ("newsfeed.test", "jobsfeed.test")}
    radars = {}
    for body in (
        {"radar_type": "industry_mentions", "keyword": "anvils"},
        {"radar_type": "industry_job_openings", "keyword": "welder"},
    ):
        status, radars[body["radar_type"]] = await _create(
            stack, http, org["token"], "industry", body
        )
        assert status == 201
    for host, before in checks.items():
        await _fetched(sites, host, after=before, times=2)

    sites.sites["newsfeed.test"].body = rss_feed(
        ("old-1", "Anvils are old news", "http://acme.test/a"),
        ("new-1", "Beta Corp buys ANVILS in bulk", "http://beta.test/press"),
        ("new-2", "Anvilsmiths unite", "http://gamma.test/x"),  # not the whole word
    )
    sites.sites["jobsfeed.test"].body = atom_feed(
        ("job-1", "Anvil welder", "http://acme.test/jobs/1"),
        ("job-2", "Night welder wanted", "http://beta.test/jobs/2"),
    )
    mentions = await _signals(stack, http, org["token"], "beta.test", wait=True, count=2)

    by_type = {s["type"]: s["data"] for s in mentions}
    assert set(by_type) == {"industry_mention", "job_opening"}
    assert by_type["industry_mention"]["entry_id"] == "new-1"
    assert by_type["industry_mention"]["radar_id"] == radars["industry_mentions"]["id"]
    assert by_type["job_opening"]["link"] == "http://beta.test/jobs/2"
    # Entries present at the baseline and entries without the keyword are not reported.
    assert await _signals(stack, http, org["token"], "acme.test") == []
    assert await _signals(stack, http, org["token"], "gamma.test") == []
    (event,) = await _signal_events(stack, radars["industry_job_openings"]["id"], 1)
    assert event.signal_detected.domain == "beta.test"


async def _fetched(sites: SiteServer, host: str, *, after: int, times: int) -> None:
    """Wait until `host` was fetched `times` more times than `after`."""
    deadline = time.monotonic() + 30
    while sites.hits.get(host, 0) < after + times:
        assert time.monotonic() < deadline, f"{host} not fetched {times} times"
        await asyncio.sleep(0.1)


async def _signals(
    stack: RunningStack,
    http: aiohttp.ClientSession,
    token: str,
    domain: str,
    *,
    wait: bool = False,
    count: int = 1,
) -> list[dict[str, Any]]:
    """The signals `signals/batch` returns for `domain`; with `wait`, at least `count`."""
    deadline = time.monotonic() + 30
    while True:
        status, _, answer = await post_json(
            http,
            f"{stack.base_url}/api/v1/signals/batch",
            {"requests": [{"domain": domain}]},
            bearer(token),
        )
        item = answer["data"][0]
        # 404: nothing at all is known about the domain yet.
        assert (status, item["status"]) in ((200, 200), (207, 404)), answer
        found: list[dict[str, Any]] = item.get("data", {}).get("signals", [])
        if not wait or len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def _signal_events(
    stack: RunningStack, radar_id: str, count: int, timeout_s: float = 20
) -> list[events_pb2.Event]:
    """`signal_detected` events of one radar on the stack's events topic."""
    consumer = AIOKafkaConsumer(
        stack.env["BATCHPLANE_EVENTS_TOPIC"],
        bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[events_pb2.Event] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = events_pb2.Event.FromString(record.value)
                    if event.signal_detected.radar_id == radar_id:
                        assert record.key == radar_id.encode()
                        found.append(event)
    finally:
        await consumer.stop()
    return found
