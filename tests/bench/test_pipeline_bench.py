"""`make bench`'s harness without running it (a run takes minutes): its scales, its
percentiles, and the table and JSON it prints and writes. No timing is checked here."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.pipeline.config import PHASES, SCALES, scale_from_env
from bench.pipeline.procs import cpu_seconds
from bench.pipeline.report import MemoryRow, Report, Row, format_report
from bench.pipeline.stats import percentile, summarise


def test_quick_is_the_default_and_single_knobs_override_a_scale() -> None:
    assert scale_from_env({}) == SCALES["quick"]
    full = scale_from_env({"BENCH_SCALE": "full", "BENCH_BACKLOG_ITEMS": "1000"})
    assert full.name == "full"
    assert full.backlog_items == 1000
    assert full.seconds == SCALES["full"].seconds
    assert scale_from_env({"BENCH_SECONDS": "2.5"}).seconds == 2.5
    assert SCALES["full"].backlog_items == 100_000
    assert all(s.sites >= s.fixture_items for s in SCALES.values())


def test_only_runs_the_parts_named() -> None:
    scale = scale_from_env({"BENCH_ONLY": "intake, celery"})
    assert scale.runs("intake")
    assert scale.runs("celery")
    assert not scale.runs("backlog")
    assert all(scale_from_env({}).runs(p) for p in PHASES)


@pytest.mark.parametrize("env", [{"BENCH_SCALE": "huge"}, {"BENCH_ONLY": "intake,nope"}])
def test_unknown_scales_and_parts_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        scale_from_env(env)


def test_percentiles_are_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.50) == 50
    assert percentile(samples, 0.99) == 99
    assert percentile([], 0.99) == 0
    load = summarise([0.010, 0.020, 0.030, 0.040], {"503": 2}, 2.0, items_per_request=100)
    assert load.per_s == 2.0
    assert load.items_per_s == 200.0
    assert load.errors == 2
    assert load.p50_ms == pytest.approx(20.0)


def _report() -> Report:
    report = Report(meta={"scale": "quick", "cores": 2})
    report.add(Row("Ceiling", "Kafka: both", 40_000.0, "records/s"))
    report.add(
        Row(
            "End to end",
            "no-op handler, 1 processor",
            1_600.0,
            "items/s",
            against="kafka produce+consume",
            ratio=0.04,
            target="≥ 10,000",
            met=False,
            note="intake-bound",
        )
    )
    report.memory = [MemoryRow("intake", 130.0, 135.0, 129.0, 23_500)]
    report.cpu = {"e2e no-op": {"intake": 0.26, "processor": 0.25}}
    report.db_part = "e2e no-op"
    report.db = {"commits": 0.09, "outbox: ins": 2.03}
    return report


def test_the_table_shows_values_ratios_targets_memory_and_cpu() -> None:
    text = format_report(_report())
    lines = text.splitlines()
    assert lines[0].split() == [
        "part",
        "metric",
        "value",
        "unit",
        "ratio",
        "to",
        "ceiling",
        "/",
        "peer",
        "target",
        "met",
    ]
    row = next(line for line in lines if "no-op handler" in line)
    assert "1,600" in row
    assert "0.04x kafka produce+consume" in row
    assert row.rstrip().endswith("NO")
    assert "intake-bound" in text
    memory = next(line for line in lines if line.startswith("intake "))
    assert memory.split() == ["intake", "130", "135", "129", "-1", "23,500"]
    assert any(line.startswith("e2e no-op") and "0.26" in line for line in lines)
    assert any(line.split() == ["outbox:", "ins", "2.03"] for line in lines)


def test_the_json_round_trips(tmp_path: Path) -> None:
    report = _report()
    path = report.write(tmp_path, "20260101T000000Z")
    assert json.loads((tmp_path / "latest.json").read_text()) == json.loads(path.read_text())
    again = Report.from_json(json.loads(path.read_text()))
    assert format_report(again) == format_report(report)


@pytest.mark.parametrize(
    "module", ["bench.pipeline.run", "bench.pipeline.__main__", "bench.pipeline.celery_app"]
)
def test_the_harness_and_the_celery_worker_module_import(module: str) -> None:
    # The worker imports `celery_app` by name; building the app opens no connection.
    importlib.import_module(module)


def test_cpu_of_a_server_counts_the_processes_it_has_reaped() -> None:
    # A backend that ends takes its CPU out of the sum of live processes; its parent
    # keeps it once it has waited for it, so the per-part figure never goes negative.
    me = os.getpid()
    before = cpu_seconds(me, reaped_children=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass",
        ],
        check=True,
    )
    assert cpu_seconds(me, reaped_children=True) - before >= 0.25
    assert cpu_seconds(me) - cpu_seconds(me, reaped_children=True) < -0.25
