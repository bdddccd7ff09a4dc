"""The client package's surface: what it exports, what it imports, and the wire names it
shares with intake."""

from __future__ import annotations

import subprocess
import sys

import pytest

import batchplane.client
from batchplane.client import RetryPolicy
from batchplane.client._exceptions import ERROR_BODY_KEY, HTTP_STATUS_KEY
from batchplane.client._transport import IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_REPLAYED_HEADER
from batchplane.client._types import TERMINAL_STATUSES
from batchplane.core.states import TERMINAL_BATCH_STATES
from batchplane.intake import idempotency, wire_errors


def test_all_is_sorted_and_names_every_public_name() -> None:
    exported = batchplane.client.__all__
    public = {name for name in vars(batchplane.client) if not name.startswith("_")}

    # Constants, then classes, then functions, each alphabetical (ruff's RUF022 order).
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    assert set(exported) == public


def test_importing_the_client_starts_nothing_of_the_server() -> None:
    code = (
        "import sys, batchplane.client\n"
        "server = ('sqlalchemy', 'aiokafka', 'redis', 'aiohttp', 'batchplane.core',"
        " 'batchplane.db', 'batchplane.intake', 'batchplane.bus')\n"
        "print(sorted(m for m in sys.modules if m.startswith(server)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[]"


def test_wire_names_match_intakes() -> None:
    assert IDEMPOTENCY_KEY_HEADER == idempotency.KEY_HEADER
    assert IDEMPOTENCY_REPLAYED_HEADER == idempotency.REPLAYED_HEADER
    assert (HTTP_STATUS_KEY, ERROR_BODY_KEY) == (
        wire_errors.HTTP_STATUS_KEY,
        wire_errors.ERROR_BODY_KEY,
    )
    assert {str(s) for s in TERMINAL_BATCH_STATES} == TERMINAL_STATUSES


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=1.0, multiplier=2.0, jitter=0.2)

    lows = [policy.backoff(n, rng=lambda: 0.0) for n in range(1, 6)]
    highs = [policy.backoff(n, rng=lambda: 1.0) for n in range(1, 6)]

    assert lows == pytest.approx([0.16, 0.32, 0.64, 0.8, 0.8])
    assert highs == pytest.approx([0.24, 0.48, 0.96, 1.2, 1.2])


def test_a_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)
