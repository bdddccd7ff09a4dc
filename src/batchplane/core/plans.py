"""Plans and their limits (contract section 1). The defaults can be replaced by a JSON file
named in BATCHPLANE_PLANS_FILE: `{"pro": {"max_batch_size": 100, "requests_per_minute": …,
"bulk_submissions_per_minute": …, "monthly_units": …}, …}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


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


class PlanConfigError(ValueError):
    """The plans file is unreadable or incomplete."""


def load_plans(path: Path | None) -> dict[str, Plan]:
    """The plan table: the defaults, or the file's plans when a path is given."""
    if path is None:
        return dict(DEFAULT_PLANS)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: Plan(
                name=name,
                max_batch_size=int(limits["max_batch_size"]),
                requests_per_minute=int(limits["requests_per_minute"]),
                bulk_submissions_per_minute=int(limits["bulk_submissions_per_minute"]),
                monthly_units=int(limits["monthly_units"]),
            )
            for name, limits in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PlanConfigError(f"cannot read plans from {path}: {error}") from error
