"""Plans and their limits (contract section 1; the defaults, configurable later)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    max_batch_size: int
    requests_per_minute: int
    bulk_submissions_per_minute: int
    monthly_units: int


DEFAULT_PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("free", 10, 60, 5, 1_000),
        Plan("starter", 50, 300, 20, 50_000),
        Plan("pro", 100, 1_000, 60, 500_000),
        Plan("enterprise", 250, 5_000, 300, 5_000_000),
    )
}
