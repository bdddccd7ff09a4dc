"""Request-level admission shared by every route: who, which plan, which scope, how often.

Order: authenticate (401; 400/403 for the organisation context), scope (403),
then the token's per-minute bucket and, for batch submissions, the separate
bulk-submission bucket (429). Nothing here meters usage or charges credits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from batchplane.core.errors import PermissionDenied, RateLimited
from batchplane.core.plans import DEFAULT_PLANS, Plan
from batchplane.intake.auth import Authenticator, Caller, Metadata
from batchplane.intake.ratelimit import Decision, Limit, RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admitted:
    """An admitted call: its caller, plan and the rate-limit headers to answer with."""

    caller: Caller
    plan: Plan
    headers: dict[str, str] = field(default_factory=dict)


class Guard:
    """Admits or refuses a call before any work is done for it."""

    def __init__(
        self, authenticator: Authenticator, limiter: RateLimiter, plans: Mapping[str, Plan]
    ) -> None:
        self._auth = authenticator
        self._limiter = limiter
        self._plans = plans

    async def admit(self, metadata: Metadata, *, scope: str | None, bulk: bool = False) -> Admitted:
        caller = await self._auth.authenticate(metadata)
        if scope is not None and scope not in caller.scopes:
            raise PermissionDenied(f"this token lacks the {scope} scope", extra={"scope": scope})
        plan = self._plan(caller.plan)
        checks = [(f"requests:{caller.token_id}", Limit("requests", plan.requests_per_minute))]
        if bulk:
            bulk_limit = Limit("bulk", plan.bulk_submissions_per_minute)
            checks.append((f"bulk:{caller.token_id}", bulk_limit))
        # All or nothing: a call refused by one bucket uses up none of the others.
        decisions = await self._limiter.check_all(checks)
        for decision in decisions:
            if not decision.allowed:
                raise RateLimited(
                    f"rate limit exceeded: {decision.limit.per_minute} {decision.limit.name}"
                    " per minute",
                    code="rate_limited",
                    headers=decision.headers(),
                )
        return Admitted(caller, plan, _merge_headers(decisions))

    def _plan(self, name: str) -> Plan:
        plan = self._plans.get(name)
        if plan is None:
            log.error("organization plan %r is not configured; applying the free plan", name)
            return self._plans.get("free", DEFAULT_PLANS["free"])
        return plan


def _merge_headers(decisions: list[Decision]) -> dict[str, str]:
    """One `ratelimit-policy` / `ratelimit` header listing every bucket consulted."""
    merged: dict[str, list[str]] = {}
    for decision in decisions:
        for name, value in decision.headers().items():
            merged.setdefault(name, []).append(value)
    return {name: ", ".join(values) for name, values in merged.items()}
