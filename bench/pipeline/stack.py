"""The services under measurement, on this machine, with a database of their own.

One broker and one database serve the whole run (the ceilings use them too). Intake,
the notifier and Envoy stay up from start to end, so their memory is measured across
every item; processors are started and stopped per part, with or without the no-op
handler. Settings are the local run's, plus what the test stack adds to fetch from
local sites (tests/support/stack.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import yaml

from batchplane.bus.local_broker import tansu_command, wait_until_ready
from batchplane.cli.admin import create_org
from batchplane.core.plans import DEFAULT_PLANS
from batchplane.core.scopes import ALL_SCOPES
from batchplane.core.settings import Settings
from batchplane.db.engine import Database
from batchplane.gateway import config as gateway_config

from .procs import Child, spawn, stop

BIN = Path(sys.executable).parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# A bench-only Envoy route answered by Envoy itself, through the same filters: the
# gateway's ceiling. Only the bench's own rendered configuration has it.
DIRECT_PATH = "/bench/direct"
BENCH_PLAN = "bench"
# The bench's plan: the enterprise plan's batch cap, limits that never bind.
PLANS = {
    **{
        p.name: {
            "max_batch_size": p.max_batch_size,
            "requests_per_minute": p.requests_per_minute,
            "bulk_submissions_per_minute": p.bulk_submissions_per_minute,
            "monthly_units": p.monthly_units,
        }
        for p in DEFAULT_PLANS.values()
    },
    BENCH_PLAN: {
        "max_batch_size": DEFAULT_PLANS["enterprise"].max_batch_size,
        "requests_per_minute": 60_000_000,
        "bulk_submissions_per_minute": 60_000_000,
        "monthly_units": 2_000_000_000,
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def site_hosts(count: int) -> list[str]:
    return [f"s{i}.test" for i in range(count)]


@dataclass
class Org:
    org_id: str
    token: str


@dataclass
class BenchStack:
    """Everything one run starts; `services` by name (processors as processor-0, -1, …)."""

    run_dir: Path
    database_url: str
    bootstrap: str
    env: dict[str, str]
    ports: dict[str, int]
    services: dict[str, Child] = field(default_factory=dict)
    broker: Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def plain_database_url(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def cli(self, *args: str) -> dict[str, Any]:
        import subprocess

        done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [str(BIN / "batchplane"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"batchplane {' '.join(args)}: {done.stdout}{done.stderr}")
        return dict(json.loads(done.stdout))

    async def create_orgs(self, names: list[str]) -> list[Org]:
        """Organisations on the bench plan, each with a token of every scope, made by the
        code of `batchplane admin create-org` (in this process: one CLI run per
        organisation would cost seconds of start-up each)."""
        database = Database(self.database_url, pool_size=1)
        try:
            created = [
                await create_org(database, name, BENCH_PLAN, 1_000_000_000, ALL_SCOPES)
                for name in names
            ]
        finally:
            await database.dispose()
        return [Org(org["org_id"], org["token"]) for org in created]

    async def _service(self, name: str, service: str, env: dict[str, str]) -> Child:
        python = sys.executable
        command = [python, "-m", "batchplane.cli.main", "serve", service]
        child = await spawn(name, command, env, self.log_dir)
        self.services[name] = child
        return child

    async def start_front(self) -> None:
        """Intake, the notifier and Envoy; healthy when Envoy's /healthz is 200."""
        await self._service("intake", "intake", self.env)
        await self._service("notifier", "notifier", self.env)
        config = self._envoy_config()
        envoy = await spawn("envoy", gateway_config.envoy_command(config), self.env, self.log_dir)
        self.services["envoy"] = envoy
        await self._wait_healthy(timeout_s=90)

    def _envoy_config(self) -> Path:
        rendered = gateway_config.render(self.settings)
        route_config = rendered["static_resources"]["listeners"][0]["filter_chains"][0]
        manager = route_config["filters"][0]["typed_config"]["route_config"]
        routes = manager["virtual_hosts"][0]["routes"]
        routes.insert(
            0,
            {
                "name": "bench-direct",
                "match": {"path": DIRECT_PATH},
                "direct_response": {"status": 200, "body": {"inline_string": '{"ok":true}'}},
                "typed_per_filter_config": {
                    "envoy.filters.http.grpc_json_transcoder": {
                        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                        "disabled": True,
                    }
                },
            },
        )
        path = self.run_dir / "envoy.yaml"
        path.write_text(yaml.safe_dump(rendered, sort_keys=False))
        return path

    async def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                for child in self.services.values():
                    if not child.running:
                        raise RuntimeError(f"{child.name} exited; see {self.log_dir}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.base_url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"the gateway was not healthy after {timeout_s}s")

    async def start_processors(self, count: int, *, noop: bool, wait: bool = True) -> list[Child]:
        """`count` processors; returns once they share every work partition (if `wait`)."""
        started = []
        for index in range(count):
            env = {
                **self.env,
                "BATCHPLANE_PROCESSOR_PORT": str(self.ports[f"processor-{index}"]),
                "BATCHPLANE_PROCESSOR_METRICS_PORT": str(self.ports[f"metrics-{index}"]),
                "BATCHPLANE_PROCESSOR_NOOP_FAMILIES": "lookup" if noop else "",
            }
            started.append(await self._service(f"processor-{index}", "processor", env))
        if wait:
            await self._wait_assigned(count, timeout_s=60)
        return started

    async def stop_processors(self) -> None:
        for name in [n for n in self.services if n.startswith("processor-")]:
            await stop(self.services.pop(name))

    async def _wait_assigned(self, count: int, timeout_s: float) -> None:
        """Until the processors' lag gauges cover every work partition exactly once."""
        settings = self.settings
        topic = settings.kafka.work_topic
        wanted = set(range(settings.kafka.work_partitions))
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                owned: list[int] = []
                for index in range(count):
                    child = self.services[f"processor-{index}"]
                    if not child.running:
                        raise RuntimeError(f"{child.name} exited; see {self.log_dir}")
                    url = f"http://127.0.0.1:{self.ports[f'metrics-{index}']}/metrics"
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url) as response:
                            owned += _partitions(await response.text(), topic)
                if sorted(owned) == sorted(wanted):
                    return
                await asyncio.sleep(0.3)
        raise TimeoutError(f"{count} processors did not share the work partitions")


def _partitions(metrics: str, topic: str) -> list[int]:
    """Partitions of `topic` with a consumer-lag series in a Prometheus text page."""
    found = []
    for line in metrics.splitlines():
        if line.startswith("batchplane_consumer_lag{") and f'topic="{topic}"' in line:
            label = line.split('partition="', 1)[1].split('"', 1)[0]
            found.append(int(label))
    return found


async def _create_database(admin_url: str) -> str:
    name = f"bp_bench_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


async def _drop_database(admin_url: str, url: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def bench_stack(run_dir: Path, *, site_port: int, sites: int) -> AsyncIterator[BenchStack]:
    """A database, a broker and the front services; all gone at exit."""
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL", os.environ.get("BATCHPLANE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL)
    )
    plain_url = await _create_database(admin_url)
    broker_port = free_port()
    broker = await spawn(
        "broker", tansu_command("127.0.0.1", broker_port), os.environ, run_dir / "logs"
    )
    stack: BenchStack | None = None
    try:
        await wait_until_ready("127.0.0.1", broker_port)
        ports = {n: free_port() for n in ("gateway", "admin", "intake", "notifier", "https")}
        ports.update({f"metrics-{i}": free_port() for i in range(4)})
        ports.update({f"processor-{i}": free_port() for i in range(4)})
        ports["intake-metrics"] = free_port()
        plans_file = run_dir / "plans.json"
        plans_file.write_text(json.dumps(PLANS))
        env = {
            **os.environ,
            "DATABASE_URL": plain_url.replace("postgresql://", "postgresql+asyncpg://", 1),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
            "BATCHPLANE_STATE_DIR": str(run_dir / "state"),
            "BATCHPLANE_GATEWAY_PORT": str(ports["gateway"]),
            "BATCHPLANE_GATEWAY_ADMIN_PORT": str(ports["admin"]),
            "BATCHPLANE_INTAKE_PORT": str(ports["intake"]),
            "BATCHPLANE_INTAKE_METRICS_PORT": str(ports["intake-metrics"]),
            "BATCHPLANE_NOTIFIER_PORT": str(ports["notifier"]),
            # Synchronous batches go to the first processor.
            "BATCHPLANE_PROCESSOR_ADDRESS": f"127.0.0.1:{ports['processor-0']}",
            # As `batchplane run` does for the local broker: groups join in about a second.
            "BATCHPLANE_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "BATCHPLANE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "BATCHPLANE_PLANS_FILE": str(plans_file),
            "REDIS_URL": os.environ.get(
                "BENCH_REDIS_URL", os.environ.get("BATCHPLANE_TEST_REDIS_URL", DEFAULT_REDIS_URL)
            ),
            # Lookups fetch from the bench's local site, as the end-to-end tests do:
            # nothing listens on the https port, so every lookup falls back to http.
            "BATCHPLANE_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
            "BATCHPLANE_EXTRA_DOMAIN_SUFFIXES": "test",
            "BATCHPLANE_FETCH_HTTPS_PORT": str(ports["https"]),
            "BATCHPLANE_FETCH_HTTP_PORT": str(site_port),
            "BATCHPLANE_FETCH_HOST_OVERRIDES": ",".join(
                f"{host}=127.0.0.1" for host in site_hosts(sites)
            ),
            "BATCHPLANE_LOG_LEVEL": "WARNING",
        }
        (run_dir / "state").mkdir(parents=True, exist_ok=True)
        stack = BenchStack(run_dir, env["DATABASE_URL"], env["KAFKA_BOOTSTRAP_SERVERS"], env, ports)
        stack.broker = broker
        await asyncio.to_thread(stack.cli, "db", "upgrade")
        await stack.start_front()
        yield stack
    finally:
        if stack is not None:
            for name in reversed(list(stack.services)):
                await stop(stack.services[name])
        await stop(broker, timeout_s=5)
        await _drop_database(admin_url, plain_url)
