"""Bulk radar items: each is created with exactly the single-create code.

A 500-class failure (anything unexpected) is retried with backoff; only when the
retries are exhausted does the item end as `radar_failure` with code 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.clock import Clock
from batchplane.core.errors import Unavailable
from batchplane.db.batches import Outcome, PendingItem
from batchplane.db.engine import Database
from batchplane.radars import failures
from batchplane.radars.bulk import bulk_public_id, created_payload, failure_payload
from batchplane.radars.creation import RadarConflict, RadarUnpaid, create_radar, radar_json
from batchplane.radars.specs import FieldError, RadarInvalid, kind_of_item, parse_radar

log = logging.getLogger(__name__)


class RadarHandler:
    """The `radar` family: one radar per item."""

    family = "radar"
    claims_each_item = False

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock,
        credits_per_radar: int,
        extra_suffixes: frozenset[str],
        retry_delays_s: Sequence[float] = (0.2, 1.0, 3.0),
    ) -> None:
        self._database = database
        self._clock = clock
        self._credits = credits_per_radar
        self._extra_suffixes = extra_suffixes
        self._retry_delays_s = tuple(retry_delays_s)

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        # One at a time per chunk, in order: the conflict check of item n sees the
        # radars created by items before it.
        return [await self._item(item) for item in items]

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        return None  # the radar itself was stored by create_radar

    async def _item(self, item: PendingItem) -> Outcome:
        body = orjson.loads(item.input)
        custom_fields = body.pop("custom_fields", None) if isinstance(body, dict) else None
        succeeded, detail = await self._with_retries(item.org_id, body)
        bulk_id = bulk_public_id(item.batch_id)
        now = self._clock.now()
        if succeeded:
            payload = created_payload(
                bulk_id=bulk_id,
                item_index=item.item_index,
                custom_fields=custom_fields,
                data=detail,
                at=now,
            )
            return Outcome(item.batch_id, item.item_index, True, result={"payload": payload})
        payload = failure_payload(
            bulk_id=bulk_id,
            item_index=item.item_index,
            custom_fields=custom_fields,
            failure=detail,
            at=now,
        )
        code = f"radar_{detail['code']}"
        return Outcome(item.batch_id, item.item_index, False, code, result={"payload": payload})

    async def _with_retries(self, org_id: str, body: Any) -> tuple[bool, dict[str, Any]]:
        for delay in (*self._retry_delays_s, None):
            try:
                return await self._create(org_id, body)
            except Unavailable:
                raise  # the whole chunk waits for storage to come back
            except Exception:
                log.exception("radar creation failed unexpectedly")
                if delay is None:
                    return False, failures.failure_body(500, failures.INTERNAL)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _create(self, org_id: str, body: Any) -> tuple[bool, dict[str, Any]]:
        kind = kind_of_item(body)
        if kind is None:
            error = FieldError("radar_type", "is not a supported radar type")
            return False, failures.failure_body(400, failures.VALIDATION, [error])
        try:
            spec = parse_radar(kind, body, extra_suffixes=self._extra_suffixes)
            radar = await create_radar(
                self._database,
                org_id=org_id,
                spec=spec,
                credits=self._credits,
                now=self._clock.now(),
            )
        except RadarInvalid as error:
            return False, failures.failure_body(400, failures.VALIDATION, error.errors)
        except RadarConflict as conflict:
            return False, failures.failure_body(
                409, failures.CONFLICT, conflict.errors, conflict.conflicting_radar_id
            )
        except RadarUnpaid:
            return False, failures.failure_body(402, failures.UNPAID)
        return True, radar_json(radar)
