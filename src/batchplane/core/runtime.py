"""Process plumbing shared by the services: signal-driven shutdown and retries.

Logging is set up by `batchplane.core.logs`, tracing by `batchplane.core.tracing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` until it returns; SIGTERM and SIGINT set `stop`."""

    async def _runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(_runner())


async def retry_forever(
    what: str, attempt: Callable[[], Awaitable[None]], *, max_backoff_s: float = 5.0
) -> None:
    """Call `attempt` until it succeeds, backing off; for dependencies that start later."""
    backoff = 0.2
    while True:
        try:
            await attempt()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
