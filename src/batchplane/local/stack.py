"""`batchplane run`: the whole stack on one machine, owned by one parent process.

Starts, in order: migrations on the embedded (or configured) database, the
local Kafka-protocol broker (unless KAFKA_BOOTSTRAP_SERVERS names one), intake,
processor, notifier and Envoy. Every child dies with this process
(PR_SET_PDEATHSIG), and Ctrl-C or SIGTERM stops them all.

The parent supervises its children, much like docker's `restart: on-failure`:

* A service child (intake, processor, notifier, gateway) that exits while the
  stack is not stopping is logged and started again after a short backoff
  (0.5 s, doubling up to 5 s). Any exit counts, a clean one too: a service never
  finishes on its own, so exit 0 means someone sent it SIGTERM, and restarting it
  is how one service is restarted gracefully.
* A child that exits 5 times within 60 s is given up on: the whole stack stops
  and `batchplane run` exits 1, as it did for any exit before supervision.
* The local broker is never restarted (see `_start`): its exit stops the stack.
* Each child's current pid is in `<state_dir>/run/<name>.pid`, rewritten when
  the child is restarted and removed when the stack stops, so an operator or a
  test can signal one service: `kill $(cat var/run/notifier.pid)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from batchplane.bus.local_broker import tansu_command, wait_until_ready
from batchplane.core.runtime import cancel_and_wait
from batchplane.core.settings import Settings
from batchplane.db.migrate import upgrade_async
from batchplane.gateway import config as gateway_config

log = logging.getLogger("batchplane.stack")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent goes away."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited is started again, and when the stack gives up on it."""

    # The child is given up on at its `max_exits`-th exit within `window_s`.
    max_exits: int = 5
    window_s: float = 60.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 5.0

    def backoff_s(self, recent_exits: int) -> float:
        """The wait before the restart that follows the `recent_exits`-th recent exit."""
        return float(min(self.max_backoff_s, self.first_backoff_s * 2 ** max(0, recent_exits - 1)))


@dataclass
class Child:
    name: str
    command: tuple[str, ...]
    restart: bool
    process: asyncio.subprocess.Process
    restarts: int = 0
    # Loop times of the exits within the policy's window.
    exits: deque[float] = field(default_factory=deque)


class Stack:
    """The children of one local run, and their supervision."""

    def __init__(
        self, settings: Settings, env: Mapping[str, str], policy: RestartPolicy | None = None
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.policy = policy or RestartPolicy()
        self.children: dict[str, Child] = {}
        # Set when a child is given up on; `failure` says why.
        self.failed = asyncio.Event()
        self.failure = ""
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def run_dir(self) -> Path:
        return self.settings.state_dir / "run"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    async def spawn(self, name: str, *command: str, restart: bool = True) -> Child:
        """Start a child and supervise it: restarted after an exit if `restart`,
        otherwise its exit stops the stack."""
        process = await self._exec(name, command)
        child = Child(name, command, restart, process)
        self.children[name] = child
        self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch-{name}"))
        return child

    async def _exec(self, name: str, command: tuple[str, ...]) -> asyncio.subprocess.Process:
        log_path = self.settings.state_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            # Cancelled while starting, asyncio kills the half-started process itself.
            process = await asyncio.create_subprocess_exec(
                *command,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self._write_pid(name, process.pid)
        log.info("started %s (pid %d, log %s)", name, process.pid, log_path)
        return process

    def _write_pid(self, name: str, pid: int) -> None:
        """Replace the pid file atomically, so a reader never sees half of it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.pid_file(name)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(f"{pid}\n", encoding="ascii")
        partial.replace(path)

    async def _watch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        while True:
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            now = loop.time()
            child.exits.append(now)
            while now - child.exits[0] > self.policy.window_s:
                child.exits.popleft()
            if not child.restart:
                self._give_up(f"{child.name} exited with {code} and is not restarted")
                return
            if len(child.exits) >= self.policy.max_exits:
                self._give_up(
                    f"{child.name} exited {len(child.exits)} times within "
                    f"{self.policy.window_s:g}s (last with {code}); giving up"
                )
                return
            delay = self.policy.backoff_s(len(child.exits))
            log.warning("%s exited with %s; restarting it in %.1fs", child.name, code, delay)
            await asyncio.sleep(delay)
            if self._stopping.is_set():
                return
            try:
                child.process = await self._exec(child.name, child.command)
            except OSError as error:
                self._give_up(f"{child.name} could not be restarted: {error}")
                return
            child.restarts += 1

    def _give_up(self, why: str) -> None:
        if not self.failed.is_set():
            self.failure = why
            self.failed.set()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop supervising, then SIGTERM every child in reverse start order and
        SIGKILL what remains after `timeout_s`."""
        self._stopping.set()
        for watcher in self._watchers:
            await cancel_and_wait(watcher)
        children = list(reversed(self.children.values()))
        for child in children:
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.terminate()
        for child in children:
            try:
                await asyncio.wait_for(child.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            self.pid_file(child.name).unlink(missing_ok=True)


async def _wait_for_gateway(stack: Stack, timeout_s: float) -> None:
    settings = stack.settings
    url = f"http://{settings.gateway_host}:{settings.gateway_port}/healthz"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if stack.failed.is_set():
                raise RuntimeError(stack.failure)
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
        # Not restarted: the broker keeps everything in memory, so a new one would have
        # lost every topic, queued record and committed offset while the services carried
        # on as if nothing happened. Stopping the stack says so instead.
        command = tansu_command("127.0.0.1", settings.broker_port)
        await stack.spawn("broker", *command, restart=False)
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
    await _wait_for_gateway(stack, timeout_s=60)


async def _run(settings: Settings) -> int:
    stack = Stack(settings, os.environ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(_start(stack))
    stopping = asyncio.create_task(stop.wait())
    failing = asyncio.create_task(stack.failed.wait())
    try:
        await asyncio.wait({starting, stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set() and not stack.failed.is_set():
            starting.result()  # a start-up error propagates
            base = f"http://{settings.gateway_host}:{settings.gateway_port}"
            logs = settings.state_dir / "logs"
            print(f"batchplane is up: {base} (logs in {logs}); Ctrl-C stops it")
            sys.stdout.flush()
            await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return 0
        log.error("%s; stopping the stack", stack.failure)
        return 1
    finally:
        if not starting.done():
            await cancel_and_wait(starting)
        elif not starting.cancelled():
            starting.exception()  # raised above, or superseded by the stop or the failure
        await cancel_and_wait(stopping)
        await cancel_and_wait(failing)
        await stack.stop()


def run_stack(settings: Settings) -> int:
    return asyncio.run(_run(settings))
