"""One table of results, printed and written as JSON under `.bench/`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One measured number, with what it is compared to."""

    section: str
    metric: str
    value: float
    unit: str
    # The ceiling or peer it is divided by, when there is one.
    against: str = ""
    ratio: float | None = None
    # The target, as text ("≥ 10000"), and whether it is met.
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class MemoryRow:
    process: str
    # After start-up and a first batch, at the highest sample, and at the end.
    warm_mb: float
    peak_mb: float
    end_mb: float
    # Items through the process between the warm and the end samples.
    items: int


@dataclass
class Report:
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    # CPU seconds per 1,000 items per process, per measured part.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    # PostgreSQL work per item of one part: rows inserted, updated, deleted per table
    # ("table: ins/upd/del") and transactions committed ("commits").
    db: dict[str, float] = field(default_factory=dict)
    db_part: str = ""

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "rows": [asdict(r) for r in self.rows],
            "memory": [asdict(m) for m in self.memory],
            "cpu_s_per_1000_items": self.cpu,
            "db_per_item": {"part": self.db_part, "counts": self.db},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return cls(
            meta=dict(data.get("meta", {})),
            rows=[Row(**r) for r in data.get("rows", [])],
            memory=[MemoryRow(**m) for m in data.get("memory", [])],
            cpu={k: dict(v) for k, v in data.get("cpu_s_per_1000_items", {}).items()},
            db=dict(data.get("db_per_item", {}).get("counts", {})),
            db_part=str(data.get("db_per_item", {}).get("part", "")),
        )

    def write(self, directory: Path, stamp: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2)
        (directory / "latest.json").write_text(text)
        path = directory / f"bench-{stamp}.json"
        path.write_text(text)
        return path


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(ratio: float) -> str:
    """Two decimals, or two significant digits below 0.1."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[met]


def _table(headers: list[str], lines: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [render(headers), render(["-" * w for w in widths]), *map(render, lines)]


def format_report(report: Report) -> str:
    """The results as plain-text tables (also what docs/benchmarks.md records)."""
    out: list[str] = []
    lines = [
        [
            r.section,
            r.metric,
            _number(r.value),
            r.unit,
            f"{_ratio(r.ratio)}x {r.against}" if r.ratio is not None else r.against,
            r.target,
            _met(r.met),
        ]
        for r in report.rows
    ]
    if lines:
        headers = ["part", "metric", "value", "unit", "ratio to ceiling / peer", "target", "met"]
        out += _table(headers, lines, right={2})
    notes = [f"  {r.section} / {r.metric}: {r.note}" for r in report.rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    if report.memory:
        memory = [
            [
                m.process,
                f"{m.warm_mb:.0f}",
                f"{m.peak_mb:.0f}",
                f"{m.end_mb:.0f}",
                f"{m.end_mb - m.warm_mb:+.0f}",
                f"{m.items:,}",
            ]
            for m in report.memory
        ]
        headers = ["process", "RSS warm MB", "peak MB", "end MB", "growth MB", "items since warm"]
        out += ["", *_table(headers, memory, right={1, 2, 3, 4, 5})]
    if report.cpu:
        processes = sorted({p for parts in report.cpu.values() for p in parts})
        cpu = [
            [part, *(f"{values.get(p, 0.0):.2f}" for p in processes)]
            for part, values in report.cpu.items()
        ]
        headers = ["CPU s per 1,000 items", *processes]
        out += ["", *_table(headers, cpu, right=set(range(1, len(processes) + 1)))]
    if report.db:
        rows = [[name, f"{value:.2f}"] for name, value in report.db.items()]
        out += ["", *_table([f"PostgreSQL per item ({report.db_part})", "count"], rows, {1})]
    return "\n".join(out)
