"""Intake's refusals arrive as the client's typed exceptions, with the family's machine
code and body: 400, 401, 402, 403, 404, 409 and 422, from unary calls and from a watch."""

from __future__ import annotations

import pytest
from tests.client.conftest import ClientFor, NewOrg
from tests.support.stack import RunningStack

from batchplane.client import (
    AuthenticationError,
    BadRequest,
    CompanyRadarBody,
    Conflict,
    IdempotencyConflict,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    UnprocessableEntity,
)


async def test_401_for_an_unknown_token(client_for: ClientFor) -> None:
    async with client_for({"token": "bp_not_a_token"}) as client:
        with pytest.raises(AuthenticationError) as refused:
            await client.lookups.create(["plain.test"])
        with pytest.raises(AuthenticationError):
            await client.get_batch(1)

    assert (refused.value.http_status, refused.value.code) == (401, "unauthorized")
    assert not refused.value.retryable


async def test_402_when_the_balance_cannot_pay(client_for: ClientFor, new_org: NewOrg) -> None:
    async with client_for(new_org(credits=1)) as client:
        with pytest.raises(PaymentRequired) as refused:
            await client.lookups.create(["plain.test", "wp.test"])

    assert (refused.value.http_status, refused.value.code) == (402, "insufficient_credits")


async def test_403_without_the_scope(
    stack: RunningStack, client_for: ClientFor, new_org: NewOrg
) -> None:
    org = new_org()
    reader = stack.cli("admin", "create-token", "--org", org["org_id"], "--scopes", "scrape.read")
    async with client_for(reader) as client:
        with pytest.raises(PermissionDenied) as refused:
            await client.lookups.create(["plain.test"])

    assert (refused.value.http_status, refused.value.code) == (403, "insufficient_scope")


async def test_404_for_another_organisations_batch(client_for: ClientFor, new_org: NewOrg) -> None:
    owner, other = new_org(), new_org()
    async with client_for(owner) as client:
        created = await client.lookups.create(["plain.test"])
    async with client_for(other) as client:
        with pytest.raises(NotFound) as unary:
            await client.get_batch(created.id)
        with pytest.raises(NotFound) as streamed:
            async for _ in client.watch(created.id):
                pass
        with pytest.raises(NotFound):
            await client.lookups.get(created.id)

    assert (unary.value.http_status, unary.value.code) == (404, "not_found")
    assert streamed.value.body == {}  # a stream's error carries no body, only its code


async def test_422_and_400_name_the_field_at_fault(client_for: ClientFor, new_org: NewOrg) -> None:
    async with client_for(new_org()) as client:
        batch = await client.lookups.create(["plain.test"])
        with pytest.raises(UnprocessableEntity) as no_domains:
            await client.lookups.create([])
        with pytest.raises(UnprocessableEntity) as bad_url:
            await client.scrapes.create({"urls": ["ftp://nope"], "schema": {"type": "object"}})
        with pytest.raises(BadRequest) as no_tasks:
            await client.enrichments.trigger({"tasks": []})
        with pytest.raises(BadRequest) as no_domain:
            await client.radars.create_company({"domain": "", "radar_type": "website_changes"})
        with pytest.raises(UnprocessableEntity) as bad_cursor:
            async for _ in client.watch(batch.id, cursor="not-a-cursor"):
                pass

    assert no_domains.value.http_status == 422
    assert "urls[0]" in bad_url.value.message
    assert no_tasks.value.code == "validation_error"  # seed 002's VALIDATION_ERROR
    assert no_domain.value.body["errors"][0]["field"] == "domain"  # seed 003's shape
    assert bad_cursor.value.http_status == 422


async def test_409s_are_conflicts_but_not_in_flight_ones(
    client_for: ClientFor, new_org: NewOrg
) -> None:
    radar: CompanyRadarBody = {"domain": "plain.test", "radar_type": "website_changes"}
    async with client_for(new_org()) as client:
        created = await client.radars.create_company(radar)
        with pytest.raises(Conflict) as duplicate:
            await client.radars.create_company(radar)

    assert type(duplicate.value) is not IdempotencyConflict
    assert duplicate.value.body["conflicting_radar_id"] == created["id"]
