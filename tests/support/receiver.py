"""A webhook receiver served on 127.0.0.1 that verifies every signature with the
Standard Webhooks library, and misbehaves on request."""

from __future__ import annotations

import contextlib
import json
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
    down) or `statuses[name]` is set (answered every time)."""

    port: int = 0
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

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
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        await runner.cleanup()
