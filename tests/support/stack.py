"""The whole stack (`batchplane run`) as a subprocess, configured for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from batchplane.core.plans import DEFAULT_PLANS
from tests.support.broker import free_port, stop_process

BIN = Path(sys.executable).parent

# The contract's default plans, plus a tiny one whose monthly quota a test can exhaust.
TEST_PLANS = {
    **{
        plan.name: {
            "max_batch_size": plan.max_batch_size,
            "requests_per_minute": plan.requests_per_minute,
            "bulk_submissions_per_minute": plan.bulk_submissions_per_minute,
            "monthly_units": plan.monthly_units,
        }
        for plan in DEFAULT_PLANS.values()
    },
    "tiny": {
        "max_batch_size": 10,
        "requests_per_minute": 600,
        "bulk_submissions_per_minute": 600,
        "monthly_units": 5,
    },
}


@dataclass
class RunningStack:
    base_url: str
    env: dict[str, str]
    state_dir: Path
    process: subprocess.Popen[bytes]
    ports: dict[str, int] = field(default_factory=dict)

    def cli(self, *args: str) -> dict[str, Any]:
        """Run `batchplane …` against the stack's database; returns its JSON output."""
        done = subprocess.run(
            [str(BIN / "batchplane"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, (
            f"batchplane {' '.join(args)} failed: {done.stdout}{done.stderr}"
        )
        return dict(json.loads(done.stdout))

    def log(self, service: str) -> str:
        path = self.state_dir / "logs" / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, service: str) -> int | None:
        """The service's current pid, from the pid file `batchplane run` keeps."""
        path = self.state_dir / "run" / f"{service}.pid"
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None


# The `own_stack` fixture: `async with own_stack(extra_env) as stack:` starts a stack of its own.
OwnStack = Callable[..., contextlib.AbstractAsyncContextManager[RunningStack]]


def stack_env(
    *,
    database_url: str,
    bootstrap_servers: str,
    state_dir: Path,
    site_port: int,
    site_hosts: list[str],
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, int]]:
    ports = {
        name: free_port()
        for name in (
            "gateway",
            "admin",
            "intake",
            "processor",
            "notifier",
            "https",
            "intake_metrics",
            "processor_metrics",
            "notifier_metrics",
        )
    }
    plans_file = state_dir / "plans.json"
    state_dir.mkdir(parents=True, exist_ok=True)
    plans_file.write_text(json.dumps(TEST_PLANS))
    suffix = os.urandom(4).hex()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "BATCHPLANE_STATE_DIR": str(state_dir),
        "BATCHPLANE_GATEWAY_PORT": str(ports["gateway"]),
        "BATCHPLANE_GATEWAY_ADMIN_PORT": str(ports["admin"]),
        "BATCHPLANE_INTAKE_PORT": str(ports["intake"]),
        "BATCHPLANE_PROCESSOR_PORT": str(ports["processor"]),
        "BATCHPLANE_WORK_TOPIC": f"test.work.{suffix}",
        "BATCHPLANE_EVENTS_TOPIC": f"test.events.{suffix}",
        "BATCHPLANE_DEAD_LETTER_TOPIC": f"test.dlq.{suffix}",
        "BATCHPLANE_PROCESSOR_GROUP": f"test-processor-{suffix}",
        "BATCHPLANE_NOTIFIER_GROUP": f"test-notifier-{suffix}",
        "BATCHPLANE_NOTIFIER_PORT": str(ports["notifier"]),
        "BATCHPLANE_INTAKE_METRICS_PORT": str(ports["intake_metrics"]),
        "BATCHPLANE_PROCESSOR_METRICS_PORT": str(ports["processor_metrics"]),
        "BATCHPLANE_NOTIFIER_METRICS_PORT": str(ports["notifier_metrics"]),
        # Time-compressed webhook retries: a dead endpoint is dead-lettered in about a second.
        "BATCHPLANE_WEBHOOK_RETRY_SCHEDULE": "0.3s,0.3s,0.3s",
        "BATCHPLANE_WEBHOOK_TIMEOUT_S": "2",
        # A killed notifier's claimed deliveries come back after 5 s, not a minute.
        "BATCHPLANE_WEBHOOK_LEASE_S": "5",
        # Live radars re-check every second.
        "BATCHPLANE_RADAR_CHECK_INTERVAL_S": "1",
        "BATCHPLANE_RADAR_NEWS_FEEDS": "http://newsfeed.test/rss.xml",
        "BATCHPLANE_RADAR_JOB_FEEDS": "http://jobsfeed.test/jobs.atom",
        "BATCHPLANE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "BATCHPLANE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "BATCHPLANE_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
        "BATCHPLANE_EXTRA_DOMAIN_SUFFIXES": "test",
        # Nothing listens on the https port: every lookup falls back to http.
        "BATCHPLANE_FETCH_HTTPS_PORT": str(ports["https"]),
        "BATCHPLANE_FETCH_HTTP_PORT": str(site_port),
        "BATCHPLANE_FETCH_HOST_OVERRIDES": ",".join(f"{h}=127.0.0.1" for h in site_hosts),
        "BATCHPLANE_FETCH_TIMEOUT_S": "10",
        "BATCHPLANE_PLANS_FILE": str(plans_file),
        # Time-compressed enrichment limits: a hanging site times out in seconds.
        "BATCHPLANE_ENRICHMENT_MAX_PROCESSING_S": "5",
        "BATCHPLANE_ENRICHMENT_SWEEP_INTERVAL_S": "0.5",
        # Rate limits shared through the real Redis, as in production.
        "REDIS_URL": os.environ.get("BATCHPLANE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        **(extra or {}),
    }
    return env, ports


async def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"batchplane run exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"stack not healthy after {timeout_s}s")


@contextlib.asynccontextmanager
async def running_stack(env: dict[str, str], ports: dict[str, int]) -> AsyncIterator[RunningStack]:
    state_dir = Path(env["BATCHPLANE_STATE_DIR"])
    state_dir.mkdir(parents=True, exist_ok=True)
    output = (state_dir / "stack.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "batchplane"), "run"], env=env, stdout=output, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{ports['gateway']}"
    stack = RunningStack(base_url, env, state_dir, process, ports)
    try:
        await wait_healthy(base_url, process, timeout_s=90)
        yield stack
    finally:
        await stop_process(process, timeout_s=20)
        output.close()
