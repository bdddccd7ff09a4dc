"""The three synchronous endpoints of seed 001, answered from the platform's own data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchplane.core.clock import rfc3339
from batchplane.db import enrichments, lookups, radars, signals
from batchplane.db.engine import Database
from batchplane.processor.sync.answers import (
    Answer,
    BadItem,
    domain_field,
    not_found,
    ok,
    only_fields,
    optional_timestamp,
    required_string,
)
from batchplane.radars import feeds, profiles
from batchplane.radars.creation import radar_json

# Technology changes (lookups and company radars), then what other radars record.
SIGNAL_TYPES = frozenset(
    {
        signals.TECHNOLOGY_ADDED,
        signals.TECHNOLOGY_REMOVED,
        profiles.PROFILE_CHANGED,
        *feeds.SIGNAL_TYPES,
    }
)


class IntelligenceFamily:
    """`{"domain"}` → what the organisation can know about a company's domain."""

    family = "intelligence"
    _fields = frozenset({"domain"})

    def __init__(self, database: Database, extra_suffixes: frozenset[str]) -> None:
        self._database = database
        self._extra_suffixes = extra_suffixes

    async def answer(self, org_id: str, item: Mapping[str, Any]) -> Answer:
        only_fields(item, self._fields)
        domain = domain_field(item, self._extra_suffixes)
        async with self._database.transaction() as session:
            stored = (await lookups.latest(session, domains=[domain])).get(domain)
            enriched = await enrichments.latest_finished(
                session, org_id=org_id, entity_id=domain, field="summary"
            )
            watching = await radars.active_for_domain(session, org_id=org_id, domain=domain)
        if stored is None and enriched is None:
            return not_found(f"nothing is known about {domain} yet: run a lookup first")
        return ok(
            {
                "domain": domain,
                "technologies": stored.technologies if stored else [],
                "looked_up_at": rfc3339(stored.looked_up_at) if stored else None,
                "enrichment": {enriched.field: enriched.data} if enriched else {},
                "radars": [radar_json(radar) for radar in watching],
            }
        )


class SignalsFamily:
    """`{"domain", "types"?, "since"?}` → change signals, newest first."""

    family = "signals"
    _fields = frozenset({"domain", "types", "since"})

    def __init__(self, database: Database, extra_suffixes: frozenset[str]) -> None:
        self._database = database
        self._extra_suffixes = extra_suffixes

    async def answer(self, org_id: str, item: Mapping[str, Any]) -> Answer:
        only_fields(item, self._fields)
        domain = domain_field(item, self._extra_suffixes)
        types = _signal_types(item.get("types"))
        since = optional_timestamp(item, "since")
        async with self._database.transaction() as session:
            known = bool(await lookups.latest(session, domains=[domain]))
            found = await signals.for_domain(
                session, domain=domain, org_id=org_id, types=types, since=since
            )
        if not known and not found:
            return not_found(f"nothing is known about {domain} yet: run a lookup first")
        return ok(
            {
                "domain": domain,
                "signals": [
                    {"type": s.type, "detected_at": rfc3339(s.detected_at), "data": s.data}
                    for s in found
                ],
            }
        )


class EnrichmentFamily:
    """`{"entity_id", "field"}` → that field's latest enrichment data."""

    family = "enrichment"
    _fields = frozenset({"entity_id", "field"})

    def __init__(self, database: Database) -> None:
        self._database = database

    async def answer(self, org_id: str, item: Mapping[str, Any]) -> Answer:
        only_fields(item, self._fields)
        entity_id = required_string(item, "entity_id")
        field = required_string(item, "field")
        async with self._database.transaction() as session:
            found = await enrichments.latest_finished(
                session, org_id=org_id, entity_id=entity_id, field=field
            )
        if found is None:
            return not_found(f"no finished enrichment of {field} for {entity_id}")
        return ok(
            {
                "entity_id": found.entity_id,
                "entity_type": found.entity_type,
                "field": found.field,
                "data": found.data,
                "updated_at": rfc3339(found.updated_at),
            }
        )


def _signal_types(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadItem("types must be an array of strings")
    unknown = sorted(set(value) - SIGNAL_TYPES)
    if unknown:
        raise BadItem(f"unknown signal type: {unknown[0]}")
    return list(value)
