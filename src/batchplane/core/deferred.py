"""Libraries imported on first use instead of at start-up.

One processor runs every item family, yet most processors only ever see a few of them,
and some families lean on large libraries no other family touches. Imported eagerly,
extruct (with lxml, rdflib, pyRdfa, mf2py, html5lib and BeautifulSoup) cost about 37 MB
of RSS, jsonschema 14 MB and feedparser 13 MB: that put an idle processor at its
150 MB budget before its first item. Deferred, a processor pays for a library only
once an item (or the radar monitor) needs it.

A module that needs such a library names it once, at the top, in place of the import:

    if TYPE_CHECKING:
        import feedparser
    else:
        feedparser = deferred_import("feedparser")

mypy sees the real module; at run time the name is a stand-in that imports the module
on the first attribute read and forwards every read to it. `tests/unit/processor/
test_import_footprint.py` checks that starting the processor imports none of them.

Why not `importlib.util.LazyLoader`: on Python 3.11 its first attribute read is not
thread-safe, and scrape extraction runs in worker threads. `importlib.import_module`
is: the import system holds a per-module lock, so a second thread waits for the first
to finish executing the module instead of reading a half-initialised one.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

__all__ = ["DeferredModule", "deferred_import", "loaded"]


class DeferredModule:
    """A stand-in for the module `name`, which is imported on the first attribute read."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        # Once imported, `import_module` is a lookup in `sys.modules`: cheap next to
        # parsing a page, which is what every caller does with the attribute.
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def deferred_import(name: str) -> Any:
    """A stand-in for the module `name` (dotted names too), imported on first use.

    Typed `Any` because callers declare the real module under `TYPE_CHECKING`. A
    missing library raises `ModuleNotFoundError` at first use rather than at start-up.
    """
    return DeferredModule(name)


async def loaded(*modules: Any) -> None:
    """Import the deferred `modules` not imported yet, in a worker thread.

    Async code awaits this before its first use: importing extruct takes about a
    second of CPU, and done on the event loop it would stall every other item, RPC and
    the Kafka consumer's heartbeats with it. Imported modules cost a dict lookup.
    """
    names = [
        module._name
        for module in modules
        if isinstance(module, DeferredModule) and module._name not in sys.modules
    ]
    if names:
        await asyncio.to_thread(lambda: [importlib.import_module(name) for name in names])
