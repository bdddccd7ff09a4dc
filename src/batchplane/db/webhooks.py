"""Webhook secrets, deliveries and their attempts (owner of webhook_secrets,
webhook_deliveries, webhook_attempts, disabled_endpoints).

Deliveries are claimed with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so
several notifiers share the work and a killed one's claims come back when the
lease runs out: delivery is at least once, always with the same `webhook-id`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from batchplane.db.dialect import insert_ignoring_conflicts, supports_skip_locked
from batchplane.db.models import (
    DisabledEndpoint,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSecret,
    table,
)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"
DISABLED = "disabled"
ITEM = "item"
COMPLETION = "completion"


@dataclass(frozen=True)
class Due:
    """A claimed delivery, ready to send."""

    id: str
    org_id: str
    url: str
    payload: bytes
    attempts: int
    # W3C headers of the span that queued it (None when not tracing).
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True)
class Attempt:
    verdict: str
    status_code: int | None
    latency_ms: int
    response_snippet: str
    error: str | None


# --- secrets ---------------------------------------------------------------------------


async def signing_secrets(
    session: AsyncSession, *, org_id: str, now: datetime, create: Callable[[], str]
) -> list[str]:
    """The organisation's secrets that still sign (newest first), creating one if none."""
    stmt = (
        select(WebhookSecret.secret)
        .where(
            WebhookSecret.org_id == org_id,
            or_(WebhookSecret.retired_at.is_(None), WebhookSecret.retired_at > now),
        )
        .order_by(WebhookSecret.id.desc())
    )
    found = list((await session.execute(stmt)).scalars())
    if found:
        return found
    secret = create()
    session.add(WebhookSecret(org_id=org_id, secret=secret, created_at=now, retired_at=None))
    await session.flush()
    return [secret]


async def rotate_secret(
    session: AsyncSession, *, org_id: str, secret: str, now: datetime, overlap: timedelta
) -> None:
    """Add `secret`; older secrets keep signing for `overlap`, then stop."""
    await session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.org_id == org_id, WebhookSecret.retired_at.is_(None))
        .values(retired_at=now + overlap)
    )
    session.add(WebhookSecret(org_id=org_id, secret=secret, created_at=now, retired_at=None))
    await session.flush()


# --- deliveries ------------------------------------------------------------------------------


async def enqueue(session: AsyncSession, *, deliveries: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries; one whose id exists already (a redelivered event) is ignored."""
    await insert_ignoring_conflicts(session, table(WebhookDelivery), list(deliveries))


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    skip_urls: Sequence[str] = (),
    per_url: int | None = None,
) -> list[Due]:
    """Take due deliveries for `lease`. A batch's completion message waits until its
    item messages are no longer pending, so it always arrives last. Endpoints in
    `skip_urls` are busy; at most `per_url` deliveries of one endpoint are taken."""
    earlier = aliased(WebhookDelivery)
    items_pending = exists().where(
        earlier.batch_id == WebhookDelivery.batch_id,
        earlier.org_id == WebhookDelivery.org_id,
        earlier.kind == ITEM,
        earlier.status == PENDING,
    )
    stmt = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until <= now),
            or_(WebhookDelivery.kind == ITEM, ~items_pending),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if skip_urls:
        stmt = stmt.where(WebhookDelivery.url.not_in(list(skip_urls)))
    if supports_skip_locked(session):
        stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
    rows = _at_most_per_url(list((await session.execute(stmt)).scalars()), per_url)
    if rows:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([r.id for r in rows]))
            .values(lease_until=now + lease)
        )
    return [Due(r.id, r.org_id, r.url, r.payload, r.attempts, r.trace_context) for r in rows]


def _at_most_per_url(rows: list[WebhookDelivery], per_url: int | None) -> list[WebhookDelivery]:
    if per_url is None:
        return rows
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        if taken.get(row.url, 0) < per_url:
            taken[row.url] = taken.get(row.url, 0) + 1
            kept.append(row)
    return kept


async def record_attempt(
    session: AsyncSession,
    *,
    delivery_id: str,
    attempt: Attempt,
    status: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    """Log the attempt and move the delivery on (retry later, or a final state)."""
    await session.execute(
        insert(WebhookAttempt).values(
            delivery_id=delivery_id,
            attempted_at=now,
            verdict=attempt.verdict,
            status_code=attempt.status_code,
            latency_ms=attempt.latency_ms,
            response_snippet=attempt.response_snippet,
            error=attempt.error,
        )
    )
    values: dict[str, Any] = {
        "status": status,
        "attempts": WebhookDelivery.attempts + 1,
        "last_status_code": attempt.status_code,
        "lease_until": None,
    }
    if status == PENDING and next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    else:
        values["finished_at"] = now
    await session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
    )


async def disable_endpoint(session: AsyncSession, *, org_id: str, url: str, now: datetime) -> None:
    """Stop sending to `url` (it answered 410): its pending deliveries end `disabled`."""
    await insert_ignoring_conflicts(
        session, table(DisabledEndpoint), [{"org_id": org_id, "url": url, "disabled_at": now}]
    )
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.org_id == org_id,
            WebhookDelivery.url == url,
            WebhookDelivery.status == PENDING,
        )
        .values(status=DISABLED, finished_at=now, lease_until=None)
    )


async def disabled_urls(session: AsyncSession, *, org_id: str, urls: Sequence[str]) -> set[str]:
    if not urls:
        return set()
    stmt = select(DisabledEndpoint.url).where(
        DisabledEndpoint.org_id == org_id, DisabledEndpoint.url.in_(set(urls))
    )
    return set((await session.execute(stmt)).scalars())


async def list_deliveries(
    session: AsyncSession, *, org_id: str, limit: int, batch_id: int | None = None
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The organisation's newest deliveries, each with its attempts (oldest first)."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.org_id == org_id)
    if batch_id is not None:
        stmt = stmt.where(WebhookDelivery.batch_id == batch_id)
    stmt = stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)
    deliveries = list((await session.execute(stmt)).scalars())
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await session.execute(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.id)
        )
        for attempt in rows.scalars():
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]


async def get_delivery(
    session: AsyncSession, *, org_id: str, delivery_id: str
) -> tuple[WebhookDelivery, list[WebhookAttempt]] | None:
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.org_id != org_id:
        return None
    rows = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    )
    return delivery, list(rows.scalars())


async def redeliver(session: AsyncSession, *, org_id: str, delivery_id: str, now: datetime) -> bool:
    """Send a delivery again now, with its retry schedule reset; False if unknown."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.org_id == org_id, WebhookDelivery.id == delivery_id)
        .values(status=PENDING, attempts=0, next_attempt_at=now, lease_until=None, finished_at=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- operators (`batchplane admin`) ------------------------------------------------------


async def dead_deliveries(
    session: AsyncSession, *, limit: int, org_id: str | None = None, batch_id: int | None = None
) -> list[WebhookDelivery]:
    """Dead-lettered deliveries, oldest first, optionally of one organisation or batch."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.status == DEAD)
    if org_id is not None:
        stmt = stmt.where(WebhookDelivery.org_id == org_id)
    if batch_id is not None:
        stmt = stmt.where(WebhookDelivery.batch_id == batch_id)
    stmt = stmt.order_by(WebhookDelivery.created_at, WebhookDelivery.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def status_counts(session: AsyncSession, *, batch_id: int) -> dict[str, int]:
    """How many of the batch's deliveries are in each state."""
    stmt = (
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.batch_id == batch_id)
        .group_by(WebhookDelivery.status)
    )
    return {status: int(count) for status, count in (await session.execute(stmt)).all()}
