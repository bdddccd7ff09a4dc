"""The no-op families setting (a benchmarking aid): which handlers it replaces, and what a
no-op item records."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from batchplane.core.settings import Settings
from batchplane.db.batches import Outcome, PendingItem
from batchplane.processor.handlers.base import ItemHandler
from batchplane.processor.handlers.noop import NOOP_RESULT, NoopHandler
from batchplane.processor.server import with_noop_families


class _Working:
    claims_each_item = False

    def __init__(self, family: str) -> None:
        self.family = family

    async def run(self, items: Sequence[PendingItem]) -> list[Outcome]:
        raise AssertionError("a no-op family must not run its handler")

    async def persist(self, session: AsyncSession, outcomes: Sequence[Outcome]) -> None:
        raise AssertionError("a no-op family must not persist family data")


def test_the_setting_is_off_by_default_and_lists_families() -> None:
    assert Settings.from_env({}).processor_noop_families == frozenset()
    env = {"BATCHPLANE_PROCESSOR_NOOP_FAMILIES": "lookup, scrape"}
    assert Settings.from_env(env).processor_noop_families == {"lookup", "scrape"}


def test_only_the_named_families_are_replaced() -> None:
    handlers: list[ItemHandler] = [_Working("lookup"), _Working("scrape")]
    assert with_noop_families(handlers, frozenset()) is handlers
    replaced = with_noop_families(handlers, frozenset({"lookup"}))
    assert isinstance(replaced[0], NoopHandler)
    assert replaced[0].family == "lookup"
    assert replaced[1] is handlers[1]


async def test_every_item_succeeds_with_a_marked_empty_result() -> None:
    items = [PendingItem(7, i, "org", "lookup", f"d{i}.test", {}) for i in range(3)]
    outcomes = await NoopHandler("lookup").run(items)
    assert [(o.key, o.succeeded, o.error_code) for o in outcomes] == [
        ((7, 0), True, None),
        ((7, 1), True, None),
        ((7, 2), True, None),
    ]
    assert all(o.result == NOOP_RESULT for o in outcomes)
