"""Each wrapped service on the whole stack, above all the strict-JSON ones: the client
sends typed mappings as JSON bytes and hands back the parsed JSON answers."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.client.conftest import ClientFor, NewOrg
from tests.support.receiver import serve_receiver
from tests.support.stack import RunningStack

from batchplane.client import EnrichmentTask

WAIT_S = 120.0


async def test_enrichment_operations_round_trip_camel_case_json(
    client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    task: EnrichmentTask = {"entityId": "acme.test", "field": "emails"}
    async with client_for(org) as client:
        triggered = await client.enrichments.trigger({"tasks": [task]})
        queried = await client.enrichments.query({"tasks": [task]})
        record = await client.enrichments.get(triggered[0]["id"])

    [created] = triggered
    assert (created["field"], created["entityType"], created["orgId"]) == (
        "emails",
        "company",
        org["org_id"],
    )
    assert created["entityId"] != "acme.test"  # answered as the entity's UUID
    assert created["creditTransactionId"] is not None  # a new task: charged
    assert [r["id"] for r in queried] == [created["id"]]
    assert record["id"] == created["id"]
    assert "data" in record


async def test_radars_are_created_read_listed_and_deactivated(
    client_for: ClientFor, new_org: NewOrg
) -> None:
    keyword = f"anvils-{uuid.uuid4().hex[:6]}"
    async with client_for(new_org()) as client:
        radar = await client.radars.create_industry(
            {"radar_type": "industry_mentions", "keyword": keyword}
        )
        read = await client.radars.get(radar["id"])
        page = await client.radars.list(limit=10)
        stopped = await client.radars.deactivate(radar["id"])

    assert (radar["type"], radar["keyword"], radar["status"]) == ("industry", keyword, "active")
    assert read == radar
    assert [r["id"] for r in page["radars"]] == [radar["id"]]
    assert page["next_offset"] is None
    assert stopped["status"] != "active"


async def test_a_radar_bulk_is_submitted_waited_for_and_its_webhooks_listed(
    stack: RunningStack, client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org(plan="enterprise")
    name = f"client-{uuid.uuid4().hex[:8]}"
    async with serve_receiver() as receiver, client_for(org) as client:
        result = await client.submit_and_wait(
            "radar",
            {
                "webhook_url": receiver.url(name),
                "radars": [
                    {"domain": "plain.test", "radar_type": "technology_changes"},
                    {"radar_type": "technology_changes", "custom_fields": {"row": 1}},
                ],
            },
            wait_timeout_s=WAIT_S,
        )
        bulk = await client.radars.get_bulk(f"bulk_{result.batch.id}")
        deadline = time.monotonic() + WAIT_S
        while not any(r.body["event"] == "bulk_completed" for r in receiver.at(name)):
            assert time.monotonic() < deadline, "no bulk_completed webhook"
            await asyncio.sleep(0.1)
        listed = await client.webhooks.list_deliveries(batch_id=result.batch.id)
        completion = next(d for d in listed.deliveries if d.event == "bulk_completed")
        redelivered = await client.webhooks.redeliver(completion.id)

    assert (result.batch.family, result.batch.status) == ("radar", "finished")
    assert [(i.index, i.status) for i in result.items] == [(0, "succeeded"), (1, "failed")]
    assert bulk["status"] == "completed"
    assert [r["event"] for r in bulk["radars"]] == ["radar_created", "radar_failure"]
    assert {d.batch_id for d in listed.deliveries} == {result.batch.id}
    assert redelivered.id == completion.id


async def test_the_framework_answers_synchronous_batches_item_by_item(
    client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    async with client_for(org) as client:
        await client.submit_and_wait("lookup", {"domains": ["wp.test"]}, wait_timeout_s=WAIT_S)
        intelligence = await client.framework.intelligence(
            [{"domain": "wp.test"}, {"domain": "never-looked-up.test"}]
        )
        signals = await client.framework.signals([{"domain": "wp.test", "types": ["x"]}])
        usage = await client.framework.usage()
        lookup_list = await client.lookups.create(["wp.test"], list_id=7)
        await client.wait(lookup_list.id, timeout_s=WAIT_S)
        domains = await client.lookups.get_list(7)
        polled = await client.lookups.get(lookup_list.id)

    assert [r.status for r in intelligence.data] == [200, 404]
    assert (intelligence.meta.batch.total, intelligence.meta.batch.failed) == (2, 1)
    assert signals.data[0].status == 400  # an unknown signal type fails that item only
    assert (usage.org_id, usage.units) == (org["org_id"], 1 + 2 + 1)
    assert [d.domain for d in domains.domains] == ["wp.test"]
    assert [r.status for r in polled.results] == ["succeeded"]
