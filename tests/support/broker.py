"""A Kafka-protocol broker for tests, in the order of docs/broker-notes.md:

1. KAFKA_BOOTSTRAP_SERVERS set → that broker (real Apache Kafka where it exists);
2. a Docker engine answers a ping → Apache Kafka through testcontainers;
3. otherwise the local Tansu broker as a subprocess on a free loopback port.

Never a silent skip: when none is possible the fixture fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import warnings
from collections.abc import AsyncIterator
from typing import Any

from batchplane.bus.local_broker import tansu_command, wait_until_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _docker_available() -> bool:
    """A Docker engine answers a ping (docker-py's own probe, ~2 ms when absent)."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False  # nothing to ask; the client would leak its socket on failure
    import docker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False


@contextlib.asynccontextmanager
async def running_broker() -> AsyncIterator[str]:
    """Yields a bootstrap-servers string."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_available():
        async with _testcontainers_kafka() as servers:
            yield servers
        return
    async with local_tansu() as servers:
        yield servers


@contextlib.asynccontextmanager
async def _testcontainers_kafka() -> AsyncIterator[str]:
    from testcontainers.kafka import KafkaContainer

    container: Any = KafkaContainer("apache/kafka:4.1.0")
    await asyncio.to_thread(container.start)
    try:
        yield container.get_bootstrap_server()
    finally:
        await asyncio.to_thread(container.stop)


@contextlib.asynccontextmanager
async def local_tansu(port: int | None = None) -> AsyncIterator[str]:
    """The memory-only local broker, stopped (SIGTERM, then SIGKILL) at exit."""
    port = port or free_port()
    process = subprocess.Popen(
        tansu_command("127.0.0.1", port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_until_ready("127.0.0.1", port)
        yield f"127.0.0.1:{port}"
    finally:
        await stop_process(process, timeout_s=5)


async def stop_process(process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout_s`."""
    process.terminate()
    try:
        await asyncio.to_thread(process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
