"""How big a run is: `BENCH_SCALE=quick|full`, and single knobs overridden by `BENCH_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

PHASES = ("ceilings", "fixture", "intake", "noop", "sizes", "replicas", "backlog", "celery")


@dataclass(frozen=True)
class Scale:
    """Every size and duration of one run."""

    name: str
    # Concurrent HTTP clients, and how long each closed-loop load runs.
    clients: int
    seconds: float
    # The intake target: this many 100-item batches per second, open loop.
    target_rate: float
    # Items pushed end to end against the local site, and with the no-op handler.
    fixture_items: int
    noop_items: int
    # The backlog drained from a standing start (the target is 100,000).
    backlog_items: int
    backlog_processors: int
    # Items per form of the Celery peer.
    celery_items: int
    # Closed-loop load per batch size (cost growth).
    size_seconds: float
    # Distinct local site hosts lookups fetch from (one DNS override each, all in one
    # environment variable, so at most about 5,000); at least `fixture_items`, or a chunk
    # fetches a host once for several items.
    sites: int
    # Which parts to run (all by default); `BENCH_ONLY=intake,celery`.
    only: tuple[str, ...] = PHASES

    def runs(self, phase: str) -> bool:
        return phase in self.only


SCALES = {
    "quick": Scale(
        name="quick",
        clients=16,
        seconds=5.0,
        target_rate=50.0,
        fixture_items=2_000,
        noop_items=5_000,
        backlog_items=10_000,
        backlog_processors=1,
        celery_items=3_000,
        size_seconds=3.0,
        sites=2_000,
    ),
    "full": Scale(
        name="full",
        clients=32,
        seconds=20.0,
        target_rate=50.0,
        fixture_items=5_000,
        noop_items=20_000,
        backlog_items=100_000,
        backlog_processors=1,
        celery_items=10_000,
        size_seconds=10.0,
        sites=5_000,
    ),
}


def scale_from_env(env: Mapping[str, str] | None = None) -> Scale:
    """`BENCH_SCALE` (quick by default), then `BENCH_<FIELD>` for any single field."""
    values = os.environ if env is None else env
    name = values.get("BENCH_SCALE", "quick").strip() or "quick"
    if name not in SCALES:
        raise SystemExit(f"BENCH_SCALE must be one of {', '.join(SCALES)}, not {name!r}")
    scale = SCALES[name]
    changes: dict[str, object] = {}
    for spec in fields(Scale):
        raw = values.get(f"BENCH_{spec.name.upper()}", "").strip()
        if not raw or spec.name == "name":
            continue
        if spec.name == "only":
            wanted = tuple(p.strip() for p in raw.split(",") if p.strip())
            unknown = set(wanted) - set(PHASES)
            if unknown:
                raise SystemExit(f"BENCH_ONLY: unknown parts {sorted(unknown)}; known: {PHASES}")
            changes["only"] = wanted
        elif isinstance(getattr(scale, spec.name), int):
            changes[spec.name] = int(raw)
        else:
            changes[spec.name] = float(raw)
    return replace(scale, **changes)  # type: ignore[arg-type]
