"""`batchplane run`: the whole stack on one machine, owned by one parent process.

Starts, in order: migrations on the embedded (or configured) database, the
local Kafka-protocol broker (unless KAFKA_BOOTSTRAP_SERVERS names one), intake,
processor, and Envoy. Every child dies with this process (PR_SET_PDEATHSIG),
Ctrl-C or SIGTERM stops them all, and if any child exits the rest are stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from batchplane.bus.local_broker import tansu_command, wait_until_ready
from batchplane.core.settings import Settings
from batchplane.db.migrate import upgrade_async
from batchplane.gateway import config as gateway_config

log = logging.getLogger("batchplane.stack")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process


class Stack:
    """The children of one local run."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = dict(env)
        self.children: list[Child] = []

    async def spawn(self, name: str, *command: str) -> Child:
        log_path = self.settings.state_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                *command,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, process)
        self.children.append(child)
        log.info("started %s (pid %d, log %s)", name, process.pid, log_path)
        return child

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child in reverse start order, SIGKILL what remains."""
        for child in reversed(self.children):
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        for child in reversed(self.children):
            try:
                await asyncio.wait_for(child.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()


async def _wait_for_gateway(settings: Settings, children: list[Child], timeout_s: float) -> None:
    url = f"http://{settings.gateway_host}:{settings.gateway_port}/healthz"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            for child in children:
                if child.process.returncode is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"gateway not healthy at {url} after {timeout_s}s")


async def _start(stack: Stack) -> None:
    settings = stack.settings
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await upgrade_async(settings.effective_database_url)
    if not stack.env.get("KAFKA_BOOTSTRAP_SERVERS"):
        await stack.spawn("broker", *tansu_command("127.0.0.1", settings.broker_port))
        await wait_until_ready("127.0.0.1", settings.broker_port)
        stack.env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{settings.broker_port}"
        # The local broker accepts short sessions: the processor joins its
        # group in about a second instead of five.
        stack.env.setdefault("BATCHPLANE_KAFKA_SESSION_TIMEOUT_MS", "2000")
        stack.env.setdefault("BATCHPLANE_KAFKA_HEARTBEAT_INTERVAL_MS", "500")
    python = sys.executable
    await stack.spawn("intake", python, "-m", "batchplane.cli.main", "serve", "intake")
    await stack.spawn("processor", python, "-m", "batchplane.cli.main", "serve", "processor")
    await stack.spawn("notifier", python, "-m", "batchplane.cli.main", "serve", "notifier")
    envoy_config = gateway_config.write(settings, settings.state_dir / "envoy.yaml")
    await stack.spawn("gateway", *gateway_config.envoy_command(envoy_config))
    await _wait_for_gateway(settings, stack.children, timeout_s=60)


async def _run(settings: Settings) -> int:
    stack = Stack(settings, os.environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(_start(stack))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 0
        starting.result()
        base = f"http://{settings.gateway_host}:{settings.gateway_port}"
        print(f"batchplane is up: {base} (logs in {settings.state_dir / 'logs'}); Ctrl-C stops it")
        sys.stdout.flush()
        exits = [asyncio.create_task(c.process.wait()) for c in stack.children]
        await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
        for child in stack.children:
            if child.process.returncode is not None and not stop.is_set():
                log.error(
                    "%s exited with %s; stopping the stack", child.name, child.process.returncode
                )
                return 1
        return 0
    finally:
        await stack.stop()


def run_stack(settings: Settings) -> int:
    return asyncio.run(_run(settings))
