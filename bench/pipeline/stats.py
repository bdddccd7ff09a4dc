"""Latency percentiles and load summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of `samples` (0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Load:
    """What one HTTP load produced."""

    requests: int
    errors: int
    seconds: float
    items_per_request: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    # Status codes of the failures, with their counts.
    error_statuses: dict[str, int]

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def items_per_s(self) -> float:
        return self.per_s * self.items_per_request


def summarise(
    latencies_s: Sequence[float],
    errors: dict[str, int],
    seconds: float,
    items_per_request: int,
) -> Load:
    return Load(
        requests=len(latencies_s),
        errors=sum(errors.values()),
        seconds=seconds,
        items_per_request=items_per_request,
        p50_ms=percentile(latencies_s, 0.50) * 1e3,
        p95_ms=percentile(latencies_s, 0.95) * 1e3,
        p99_ms=percentile(latencies_s, 0.99) * 1e3,
        error_statuses=dict(errors),
    )
