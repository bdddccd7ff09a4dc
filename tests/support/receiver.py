"""A webhook receiver served on 127.0.0.1 that verifies every signature with the
Standard Webhooks library, and misbehaves on request."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    path: str
    webhook_id: str
    body: dict[str, Any]
    verified: bool


@dataclass
class Receiver:
    """`/hooks/<name>` answers 200, unless `failures[name]` > 0 (then 503, counting
    down) or `statuses[name]` is set (answered every time). With `delays[name]` it
    answers only after that many seconds: longer than the notifier's webhook timeout,
    the request hangs until the notifier gives up on it.

    A message counts as received when its body has arrived, before any delay;
    `in_flight[name]` counts the requests that arrived and are not answered yet (a
    request whose sender hangs up is dropped from it at once)."""

    port: int = 0
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    in_flight: Counter[str] = field(default_factory=Counter)
    # Set when the receiver shuts down, so delayed requests do not hold it up.
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def at(self, name: str) -> list[Received]:
        return [r for r in self.received if r.path == name]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await request.read()
        self.received.append(
            Received(
                name,
                request.headers.get("webhook-id", ""),
                json.loads(raw),
                self._verify(raw, request),
            )
        )
        self.in_flight[name] += 1
        try:
            if name in self.delays:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), self.delays[name])
        finally:
            # Also when the handler is cancelled because the sender hung up.
            self.in_flight[name] -= 1
        if name in self.statuses:
            return web.Response(status=self.statuses[name])
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            return web.Response(status=503, text="try later")
        return web.Response(status=200, text="ok")

    def _verify(self, raw: bytes, request: web.Request) -> bool:
        headers = {k.lower(): v for k, v in request.headers.items()}
        for secret in self.secrets:
            try:
                Webhook(secret).verify(raw.decode(), headers)
            except Exception:
                continue
            return True
        return False


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    # Handlers are cancelled when the sender hangs up, so `in_flight` stays true.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        receiver.closing.set()
        await runner.cleanup()
