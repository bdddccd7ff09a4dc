"""The real Envoy binary as the judge of a rendered configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

from batchplane.gateway.config import envoy_binary


def assert_envoy_accepts(path: Path) -> None:
    """`envoy --mode validate` must accept the configuration file at `path`."""
    done = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
