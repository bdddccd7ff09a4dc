"""Accepting a bulk lookup: validate, price, charge, store, queue — in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from batchplane.core.clock import Clock
from batchplane.core.json_body import (
    INT32_MAX,
    optional_bool,
    optional_int,
    parse_object,
    reject_unknown,
    string_array,
)
from batchplane.core.plans import Plan
from batchplane.core.settings import KafkaSettings, LookupSettings
from batchplane.db import lookups
from batchplane.db.engine import Database
from batchplane.db.models import Batch
from batchplane.intake.acceptance import accept_batch
from batchplane.intake.auth import Caller
from batchplane.lookup.domains import InvalidDomain, normalise_domain

FAMILY = "lookup"
_FIELDS = frozenset({"domains", "recompute", "max_age", "list_id", "webhook_url"})


@dataclass(frozen=True)
class LookupRequest:
    """A validated bulk lookup request, whichever wire it came from."""

    domains: list[str]
    recompute: bool
    max_age_ms: int
    list_id: int | None
    webhook_url: str | None = None


def parse_lookup_json(
    raw: bytes, settings: LookupSettings, *, max_domains: int | None = None
) -> LookupRequest:
    """Read the seed's JSON body strictly (unknown fields and wrong types are 4xx).

    `max_domains` is the effective cap: the smaller of the plan's and the route's.
    """
    body = parse_object(raw)
    reject_unknown(body, _FIELDS)
    return LookupRequest(
        domains=string_array(body, "domains", max_items=max_domains or settings.max_domains),
        recompute=optional_bool(body, "recompute", False),
        max_age_ms=_max_age(optional_int(body, "max_age", minimum=0, maximum=2**53), settings),
        list_id=optional_int(body, "list_id", minimum=1, maximum=INT32_MAX),
        webhook_url=body.get("webhook_url"),  # checked by the route's WebhookUrlPolicy
    )


def _max_age(value: int | None, settings: LookupSettings) -> int:
    return settings.default_max_age_ms if value is None else value


@dataclass(frozen=True)
class PlannedItems:
    """Distinct items of a request: normalised domains, or the raw text of invalid ones."""

    inputs: list[str]
    valid_domains: list[str]


def plan_items(raw_domains: Sequence[str], extra_suffixes: frozenset[str]) -> PlannedItems:
    """Normalise and de-duplicate, keeping first-seen order.

    A string that is not a domain stays an item (it fails alone, as
    `invalid_domain`), so the batch is never rejected for one bad entry.
    """
    inputs: dict[str, None] = {}
    valid: dict[str, None] = {}
    for raw in raw_domains:
        try:
            domain = normalise_domain(raw, extra_suffixes=extra_suffixes)
        except InvalidDomain:
            inputs.setdefault(raw.strip(), None)
            continue
        inputs.setdefault(domain, None)
        valid.setdefault(domain, None)
    return PlannedItems(inputs=list(inputs), valid_domains=list(valid))


class LookupIntake:
    """Stores accepted bulk lookups and queues their items through the outbox."""

    def __init__(
        self,
        database: Database,
        *,
        lookup: LookupSettings,
        kafka: KafkaSettings,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._lookup = lookup
        self._kafka = kafka
        self._clock = clock
        self._on_commit = on_commit

    async def submit(self, caller: Caller, plan: Plan, request: LookupRequest) -> Batch:
        """Meter, charge, store and queue a batch in one transaction.

        Raises RateLimited (`quota_exceeded`) or PaymentRequired, and then
        nothing is stored, metered or charged.
        """
        planned = plan_items(request.domains, self._lookup.extra_suffixes)
        now = self._clock.now()
        async with self._database.transaction() as session:
            accepted = await accept_batch(
                session,
                caller=caller,
                plan=plan,
                family=FAMILY,
                inputs=planned.inputs,
                params={
                    "recompute": request.recompute,
                    "max_age_ms": request.max_age_ms,
                    "list_id": request.list_id,
                    "webhook_url": request.webhook_url,
                },
                unit_credits=self._lookup.credits_per_domain,
                kafka=self._kafka,
                now=now,
            )
            if request.list_id is not None:
                await lookups.add_to_list(
                    session,
                    org_id=caller.org_id,
                    list_id=request.list_id,
                    domains=planned.valid_domains,
                    now=now,
                )
        self._on_commit()
        return accepted.batch
