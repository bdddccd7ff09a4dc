"""Sends queued deliveries, retries them on schedule, dead-letters what never lands.

Deliveries are claimed in small numbers and sent concurrently; an endpoint that
already has its share of attempts in flight is skipped when claiming, so a slow
or dead endpoint holds at most its own slots and never delays the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from datetime import datetime, timedelta

from batchplane.core import metrics, tracing
from batchplane.core.clock import Clock
from batchplane.core.errors import Unavailable
from batchplane.core.logs import log_context
from batchplane.db import webhooks
from batchplane.db.engine import Database
from batchplane.notifier.delivery import (
    AttemptResult,
    RetryPolicy,
    Verdict,
    WebhookSender,
    new_secret,
    sign_with,
)

log = logging.getLogger(__name__)


class Dispatcher:
    """One notifier's delivery loop."""

    def __init__(
        self,
        database: Database,
        sender: WebhookSender,
        policy: RetryPolicy,
        *,
        clock: Clock,
        per_endpoint: int = 4,
        max_in_flight: int = 100,
        lease_s: float = 60.0,
        poll_interval_s: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self._database = database
        self._sender = sender
        self._policy = policy
        self._clock = clock
        self._per_endpoint = per_endpoint
        self._max_in_flight = max_in_flight
        self._lease = timedelta(seconds=lease_s)
        self._poll_interval_s = poll_interval_s
        self._rng = rng or random.Random()
        self._busy: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0

    async def run(self) -> None:
        try:
            while True:
                claimed = await self._claim_more()
                if not claimed and not self._tasks:
                    await asyncio.sleep(self._poll_interval_s)
                elif self._tasks:
                    await asyncio.wait(
                        self._tasks, timeout=self._poll_interval_s, return_when="FIRST_COMPLETED"
                    )
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _claim_more(self) -> int:
        room = self._max_in_flight - len(self._tasks)
        if room <= 0:
            return 0
        saturated = [url for url, n in self._busy.items() if n >= self._per_endpoint]
        try:
            async with self._database.transaction() as session:
                due = await webhooks.claim_due(
                    session,
                    now=self._clock.now(),
                    lease=self._lease,
                    limit=room,
                    skip_urls=saturated,
                    per_url=self._per_endpoint,
                )
        except Unavailable as error:
            log.warning("cannot claim deliveries: %s", error)
            return 0
        for delivery in due:
            self._busy[delivery.url] += 1
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(due)

    async def _deliver(self, due: webhooks.Due) -> None:
        with log_context(delivery_id=due.id, org_id=due.org_id):
            await self._deliver_in_context(due)

    async def _deliver_in_context(self, due: webhooks.Due) -> None:
        try:
            now = self._clock.now()
            async with self._database.transaction() as session:
                secrets = await webhooks.signing_secrets(
                    session, org_id=due.org_id, now=now, create=new_secret
                )
            headers = sign_with(secrets, due.id, now, due.payload)
            result = await self._send(due, headers)
            await self._record(due, result)
        except Unavailable as error:
            # The lease runs out and the delivery is claimed again later.
            log.warning("delivery %s postponed: %s", due.id, error)
        finally:
            self._busy[due.url] -= 1
            if self._busy[due.url] <= 0:
                del self._busy[due.url]

    async def _send(self, due: webhooks.Due, headers: dict[str, str]) -> AttemptResult:
        """One attempt, in a CLIENT span under the span that queued the delivery.

        The span holds the URL's host, never its path or query (a client's tokens may
        be there), nor the signature, the secrets or the body. No `traceparent` goes
        to the endpoint: it is the client's server, outside the services, and our
        span ids and sampling decisions are nothing it needs (`webhook-id` identifies
        the message); the signed Standard Webhooks headers stay all it receives.
        """
        with tracing.http_client(
            "POST",
            due.url,
            parent=due.trace_context,
            attributes={
                "batchplane.webhook.id": due.id,
                "batchplane.webhook.attempt": due.attempts + 1,
            },
        ) as span:
            result = await self._sender.send(due.url, due.payload, headers)
            if result.status is not None:
                span.set_attribute("http.response.status_code", result.status)
            span.set_attribute("batchplane.webhook.verdict", result.verdict.value)
            if result.verdict is not Verdict.DELIVERED:
                # The stable code only: details may quote the endpoint's answer.
                error = (result.error or "").split(":", 1)[0] or str(result.status)
                tracing.failed(span, error)
        return result

    async def _record(self, due: webhooks.Due, result: AttemptResult) -> None:
        now = self._clock.now()
        status, next_at = self._next_state(due, result)
        attempt = webhooks.Attempt(
            verdict=result.verdict.value,
            status_code=result.status,
            latency_ms=result.latency_ms,
            response_snippet=result.response_snippet,
            error=result.error,
        )
        async with self._database.transaction() as session:
            await webhooks.record_attempt(
                session,
                delivery_id=due.id,
                attempt=attempt,
                status=status,
                next_attempt_at=next_at,
                now=now,
            )
            if result.verdict is Verdict.DISABLE:
                await webhooks.disable_endpoint(session, org_id=due.org_id, url=due.url, now=now)
        final = None if status == webhooks.PENDING else status
        metrics.webhook_attempt(result.verdict.value, result.latency_ms, final)
        if status == webhooks.DELIVERED:
            self.delivered += 1
        elif status == webhooks.DEAD:
            log.warning("delivery %s dead-lettered after %d attempts", due.id, due.attempts + 1)

    def _next_state(self, due: webhooks.Due, result: AttemptResult) -> tuple[str, datetime | None]:
        if result.verdict is Verdict.DELIVERED:
            return webhooks.DELIVERED, None
        if result.verdict is Verdict.FAILED:
            return webhooks.FAILED, None
        if result.verdict is Verdict.DISABLE:
            return webhooks.DISABLED, None
        delay = self._policy.next_delay(due.attempts + 1, result.retry_after_s, self._rng)
        if delay is None:
            return webhooks.DEAD, None
        return webhooks.PENDING, self._clock.now() + timedelta(seconds=delay)
