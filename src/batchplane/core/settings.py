"""Typed, immutable settings, read once at start-up and passed in.

Every value comes from an environment variable; `Settings.from_env(env)` takes
the mapping explicitly so tests never touch `os.environ`. `DATABASE_URL` and
`KAFKA_BOOTSTRAP_SERVERS` keep their conventional names; everything else is
prefixed `BATCHPLANE_`. The README's configuration table lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchplane.core.plans import DEFAULT_PLANS, Plan, PlanConfigError, load_plans

DEFAULT_STATE_DIR = "var"


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used."""


@dataclass(frozen=True)
class KafkaSettings:
    """Broker address, topic names and consumer tuning."""

    bootstrap_servers: str = "127.0.0.1:9092"
    work_topic: str = "batchplane.work"
    events_topic: str = "batchplane.events"
    dead_letter_topic: str = "batchplane.work.dlq"
    work_partitions: int = 12
    events_partitions: int = 12
    processor_group: str = "batchplane-processor"
    notifier_group: str = "batchplane-notifier"
    # Apache Kafka refuses session timeouts under 6 s by default; the local
    # broker and the tests use shorter ones to rebalance in about a second.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 100
    max_poll_records: int = 500
    # Chunks a processor works on at once; offsets are still committed in order.
    chunks_in_flight: int = 8
    # Most items in one chunk (one claim, one handler call, one outcome transaction).
    chunk_items: int = 500
    # How often clients refresh the cluster metadata: how soon a consumer sees topics
    # that were created again after the broker lost them (aiokafka's default is 5 min).
    metadata_max_age_ms: int = 30_000


@dataclass(frozen=True)
class LookupSettings:
    """Bulk lookup pricing, limits and outbound fetch behaviour."""

    credits_per_domain: int = 1
    max_domains: int = 100
    default_max_age_ms: int = 7 * 24 * 3600 * 1000
    fetch_timeout_s: float = 10.0
    fetch_max_body_bytes: int = 2_000_000
    fetch_max_redirects: int = 5
    fetch_concurrency: int = 200
    # Test and operator hooks: where https:// and http:// connect when the URL
    # names no port, and fixed host → IP answers (like curl --resolve).
    https_port: int = 443
    http_port: int = 80
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    # Suffixes accepted as domains although not public (e.g. "test").
    extra_suffixes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EnrichmentSettings:
    """Enrichment pricing, reuse and time limits."""

    credits_per_task: int = 1
    # A field enriched within this window is answered from the existing record.
    freshness_s: int = 7 * 24 * 3600
    # Records not terminal after this long are marked `timeout` by the sweeper.
    max_processing_s: float = 300.0
    sweep_interval_s: float = 10.0


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook delivery: retry schedule, limits, and which plain-http hosts are allowed."""

    # Delays after each failed attempt; about a day in all, then dead-lettered.
    retry_schedule: str = "5s,5m,30m,2h,5h,10h,10h"
    timeout_s: float = 15.0
    per_endpoint_concurrency: int = 4
    max_in_flight: int = 100
    # How long a notifier holds a claimed delivery; a killed notifier's claims are sent
    # again by any notifier after this. Longer than `timeout_s`, so that an attempt still
    # in flight is never claimed a second time.
    lease_s: float = 60.0
    # http:// webhook URLs are refused except for these hosts (https is always fine).
    allow_http_hosts: frozenset[str] = frozenset()
    # How long a rotated-out signing secret keeps signing.
    secret_overlap_s: int = 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Everything a batchplane process needs, resolved from the environment."""

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    database_url: str = ""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    lookup: LookupSettings = field(default_factory=LookupSettings)
    enrichment: EnrichmentSettings = field(default_factory=EnrichmentSettings)
    scrape_credits_per_url: int = 1
    radar_credits: int = 1
    # How often an active radar is re-checked (company: its domain's technologies;
    # contact: its profile page; industry: the operator's feeds).
    radar_check_interval_s: float = 3600.0
    # RSS/Atom feeds that industry_mentions and industry_news radars scan.
    radar_news_feeds: tuple[str, ...] = ()
    # RSS/Atom feeds of job postings that industry_job_openings radars scan.
    radar_job_feeds: tuple[str, ...] = ()
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 50053
    # Largest page a scrape job reads; a larger one fails the job as too large.
    scrape_max_body_bytes: int = 5_000_000
    # CIDRs outbound fetches may reach although private or loopback.
    outbound_allow_networks: tuple[str, ...] = ()
    intake_host: str = "127.0.0.1"
    intake_port: int = 50051
    processor_host: str = "127.0.0.1"
    processor_port: int = 50052
    # Benchmarking aid (`make bench`), never for production: the processor records a
    # trivial success for every item of these families instead of running their handler.
    processor_noop_families: frozenset[str] = frozenset()
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_admin_port: int = 9901
    # Envoy's admin interface can stop the server: loopback unless told otherwise.
    gateway_admin_host: str = "127.0.0.1"
    broker_port: int = 9092
    # Largest request body the gateway accepts (bytes); larger → 413.
    gateway_max_body_bytes: int = 1_048_576
    # Shared rate limits across intake replicas; in-process limiter when unset.
    redis_url: str | None = None
    plans: Mapping[str, Plan] = field(default_factory=lambda: dict(DEFAULT_PLANS))
    idempotency_ttl_s: int = 24 * 3600
    # An in-flight key older than this belonged to a request that died.
    idempotency_lease_s: int = 120
    # Where intake reaches the processor's ItemExecutorService (sync batches).
    processor_address: str = "127.0.0.1:50052"
    sync_batch_timeout_s: float = 30.0
    outbox_batch_size: int = 16
    outbox_poll_interval_s: float = 0.2
    outbox_linger_s: float = 0.005
    # Items still queued and held by no processor this long after their work was
    # published are published again (the broker lost the record, or its processor died).
    # Longer than the longest item's work, or a slow item is looked at twice.
    requeue_lease_s: float = 900.0
    requeue_interval_s: float = 60.0
    # Readiness: how often each service probes its database and broker (and intake its
    # Redis), and how long one probe may take before the dependency counts as down.
    health_interval_s: float = 5.0
    health_timeout_s: float = 2.0
    log_level: str = "INFO"
    # "text" (one readable line per record) or "json" (one JSON object per line).
    log_format: str = "text"
    # Where spans go: "none" (no tracing at all), "console" (stdout) or "otlp"
    # (OTLP/HTTP protobuf to `otlp_endpoint`, and Envoy's spans too).
    otel_exporter: str = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318"
    # Prometheus `/metrics` over HTTP, one port per service; None serves none, 0 picks a
    # free port (tests).
    metrics_host: str = "127.0.0.1"
    intake_metrics_port: int | None = None
    processor_metrics_port: int | None = None
    notifier_metrics_port: int | None = None

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under the state dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'batchplane.db').resolve()}"

    @property
    def intake_address(self) -> str:
        return f"{self.intake_host}:{self.intake_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (the process environment when None)."""
        e = _Env(os.environ if env is None else env)
        broker_port = e.integer("BATCHPLANE_BROKER_PORT", 9092)
        kafka = KafkaSettings(
            bootstrap_servers=e.text("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{broker_port}"),
            work_topic=e.text("BATCHPLANE_WORK_TOPIC", KafkaSettings.work_topic),
            events_topic=e.text("BATCHPLANE_EVENTS_TOPIC", KafkaSettings.events_topic),
            dead_letter_topic=e.text(
                "BATCHPLANE_DEAD_LETTER_TOPIC", KafkaSettings.dead_letter_topic
            ),
            work_partitions=e.integer("BATCHPLANE_WORK_PARTITIONS", KafkaSettings.work_partitions),
            events_partitions=e.integer(
                "BATCHPLANE_EVENTS_PARTITIONS", KafkaSettings.events_partitions
            ),
            processor_group=e.text("BATCHPLANE_PROCESSOR_GROUP", KafkaSettings.processor_group),
            notifier_group=e.text("BATCHPLANE_NOTIFIER_GROUP", KafkaSettings.notifier_group),
            session_timeout_ms=e.integer(
                "BATCHPLANE_KAFKA_SESSION_TIMEOUT_MS", KafkaSettings.session_timeout_ms
            ),
            heartbeat_interval_ms=e.integer(
                "BATCHPLANE_KAFKA_HEARTBEAT_INTERVAL_MS", KafkaSettings.heartbeat_interval_ms
            ),
            fetch_max_wait_ms=e.integer("BATCHPLANE_KAFKA_FETCH_MAX_WAIT_MS", 100),
            max_poll_records=e.integer("BATCHPLANE_KAFKA_MAX_POLL_RECORDS", 500),
            chunks_in_flight=e.integer("BATCHPLANE_PROCESSOR_CHUNKS_IN_FLIGHT", 8),
            chunk_items=e.integer("BATCHPLANE_PROCESSOR_CHUNK_ITEMS", 500),
            metadata_max_age_ms=e.integer(
                "BATCHPLANE_KAFKA_METADATA_MAX_AGE_MS", KafkaSettings.metadata_max_age_ms
            ),
        )
        lookup = LookupSettings(
            credits_per_domain=e.integer("BATCHPLANE_LOOKUP_CREDITS_PER_DOMAIN", 1),
            default_max_age_ms=e.integer("BATCHPLANE_LOOKUP_DEFAULT_MAX_AGE_MS", 604_800_000),
            fetch_timeout_s=e.number("BATCHPLANE_FETCH_TIMEOUT_S", 10.0),
            fetch_max_body_bytes=e.integer("BATCHPLANE_FETCH_MAX_BODY_BYTES", 2_000_000),
            fetch_max_redirects=e.integer("BATCHPLANE_FETCH_MAX_REDIRECTS", 5),
            fetch_concurrency=e.integer("BATCHPLANE_FETCH_CONCURRENCY", 200),
            https_port=e.integer("BATCHPLANE_FETCH_HTTPS_PORT", 443),
            http_port=e.integer("BATCHPLANE_FETCH_HTTP_PORT", 80),
            host_overrides=e.pairs("BATCHPLANE_FETCH_HOST_OVERRIDES"),
            extra_suffixes=frozenset(e.items("BATCHPLANE_EXTRA_DOMAIN_SUFFIXES")),
        )
        enrichment = EnrichmentSettings(
            credits_per_task=e.integer("BATCHPLANE_ENRICHMENT_CREDITS_PER_TASK", 1),
            freshness_s=e.integer("BATCHPLANE_ENRICHMENT_FRESHNESS_S", 7 * 24 * 3600),
            max_processing_s=e.number("BATCHPLANE_ENRICHMENT_MAX_PROCESSING_S", 300.0),
            sweep_interval_s=e.number("BATCHPLANE_ENRICHMENT_SWEEP_INTERVAL_S", 10.0),
        )
        webhooks = WebhookSettings(
            retry_schedule=e.text(
                "BATCHPLANE_WEBHOOK_RETRY_SCHEDULE", WebhookSettings.retry_schedule
            ),
            timeout_s=e.number("BATCHPLANE_WEBHOOK_TIMEOUT_S", WebhookSettings.timeout_s),
            per_endpoint_concurrency=e.integer("BATCHPLANE_WEBHOOK_PER_ENDPOINT", 4),
            max_in_flight=e.integer("BATCHPLANE_WEBHOOK_MAX_IN_FLIGHT", 100),
            lease_s=e.number("BATCHPLANE_WEBHOOK_LEASE_S", WebhookSettings.lease_s),
            allow_http_hosts=frozenset(e.items("BATCHPLANE_WEBHOOK_ALLOW_HTTP_HOSTS")),
            secret_overlap_s=e.integer("BATCHPLANE_WEBHOOK_SECRET_OVERLAP_S", 24 * 3600),
        )
        if webhooks.lease_s <= webhooks.timeout_s:
            raise SettingsError(
                "BATCHPLANE_WEBHOOK_LEASE_S must be longer than BATCHPLANE_WEBHOOK_TIMEOUT_S "
                f"({webhooks.lease_s:g} <= {webhooks.timeout_s:g}): a delivery still in flight "
                "would be claimed and sent again"
            )
        return cls(
            state_dir=Path(e.text("BATCHPLANE_STATE_DIR", DEFAULT_STATE_DIR)),
            database_url=e.text("DATABASE_URL", ""),
            kafka=kafka,
            lookup=lookup,
            enrichment=enrichment,
            scrape_credits_per_url=e.integer("BATCHPLANE_SCRAPE_CREDITS_PER_URL", 1),
            radar_credits=e.integer("BATCHPLANE_RADAR_CREDITS", 1),
            radar_check_interval_s=e.number("BATCHPLANE_RADAR_CHECK_INTERVAL_S", 3600.0),
            radar_news_feeds=tuple(e.items("BATCHPLANE_RADAR_NEWS_FEEDS")),
            radar_job_feeds=tuple(e.items("BATCHPLANE_RADAR_JOB_FEEDS")),
            webhooks=webhooks,
            notifier_host=e.text("BATCHPLANE_NOTIFIER_HOST", "127.0.0.1"),
            notifier_port=e.integer("BATCHPLANE_NOTIFIER_PORT", 50053),
            scrape_max_body_bytes=e.integer("BATCHPLANE_SCRAPE_MAX_BODY_BYTES", 5_000_000),
            outbound_allow_networks=tuple(e.items("BATCHPLANE_OUTBOUND_ALLOW_NETWORKS")),
            intake_host=e.text("BATCHPLANE_INTAKE_HOST", "127.0.0.1"),
            intake_port=e.integer("BATCHPLANE_INTAKE_PORT", 50051),
            processor_host=e.text("BATCHPLANE_PROCESSOR_HOST", "127.0.0.1"),
            processor_port=e.integer("BATCHPLANE_PROCESSOR_PORT", 50052),
            processor_noop_families=frozenset(e.items("BATCHPLANE_PROCESSOR_NOOP_FAMILIES")),
            gateway_host=e.text("BATCHPLANE_GATEWAY_HOST", "127.0.0.1"),
            gateway_port=e.integer("BATCHPLANE_GATEWAY_PORT", 8080),
            gateway_admin_port=e.integer("BATCHPLANE_GATEWAY_ADMIN_PORT", 9901),
            gateway_admin_host=e.text("BATCHPLANE_GATEWAY_ADMIN_HOST", "127.0.0.1"),
            broker_port=broker_port,
            gateway_max_body_bytes=e.integer("BATCHPLANE_GATEWAY_MAX_BODY_BYTES", 1_048_576),
            redis_url=e.text("REDIS_URL", "") or None,
            plans=_plans(e.text("BATCHPLANE_PLANS_FILE", "")),
            idempotency_ttl_s=e.integer("BATCHPLANE_IDEMPOTENCY_TTL_S", 24 * 3600),
            idempotency_lease_s=e.integer("BATCHPLANE_IDEMPOTENCY_LEASE_S", 120),
            processor_address=e.text(
                "BATCHPLANE_PROCESSOR_ADDRESS",
                f"{e.text('BATCHPLANE_PROCESSOR_HOST', '127.0.0.1')}:"
                f"{e.integer('BATCHPLANE_PROCESSOR_PORT', 50052)}",
            ),
            sync_batch_timeout_s=e.number("BATCHPLANE_SYNC_BATCH_TIMEOUT_S", 30.0),
            outbox_batch_size=e.integer("BATCHPLANE_OUTBOX_BATCH_SIZE", 16),
            outbox_poll_interval_s=e.number("BATCHPLANE_OUTBOX_POLL_INTERVAL_S", 0.2),
            outbox_linger_s=e.number("BATCHPLANE_OUTBOX_LINGER_S", 0.005),
            requeue_lease_s=e.number("BATCHPLANE_REQUEUE_LEASE_S", 900.0),
            requeue_interval_s=e.number("BATCHPLANE_REQUEUE_INTERVAL_S", 60.0),
            health_interval_s=e.number("BATCHPLANE_HEALTH_INTERVAL_S", 5.0),
            health_timeout_s=e.number("BATCHPLANE_HEALTH_TIMEOUT_S", 2.0),
            log_level=e.text("BATCHPLANE_LOG_LEVEL", "INFO"),
            log_format=e.choice("BATCHPLANE_LOG_FORMAT", "text", ("text", "json")),
            otel_exporter=e.choice("BATCHPLANE_OTEL_EXPORTER", "none", ("none", "console", "otlp")),
            otlp_endpoint=e.text("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            metrics_host=e.text("BATCHPLANE_METRICS_HOST", "127.0.0.1"),
            intake_metrics_port=e.optional_integer("BATCHPLANE_INTAKE_METRICS_PORT"),
            processor_metrics_port=e.optional_integer("BATCHPLANE_PROCESSOR_METRICS_PORT"),
            notifier_metrics_port=e.optional_integer("BATCHPLANE_NOTIFIER_METRICS_PORT"),
        )


def _plans(path: str) -> dict[str, Plan]:
    try:
        return load_plans(Path(path) if path else None)
    except PlanConfigError as error:
        raise SettingsError(str(error)) from error


@dataclass(frozen=True)
class _Env:
    """Typed reads of one environment mapping, with errors naming the variable."""

    values: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        value = self.values.get(name, "").strip()
        return value or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def integer(self, name: str, default: int) -> int:
        raw = self.values.get(name, "").strip()
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None

    def optional_integer(self, name: str) -> int | None:
        """An integer, or None when the variable is unset or empty."""
        if not self.values.get(name, "").strip():
            return None
        return self.integer(name, 0)

    def number(self, name: str, default: float) -> float:
        raw = self.values.get(name, "").strip()
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None

    def items(self, name: str) -> list[str]:
        return [part.strip() for part in self.values.get(name, "").split(",") if part.strip()]

    def pairs(self, name: str) -> dict[str, str]:
        """Parse `a=1,b=2` into a dict."""
        result: dict[str, str] = {}
        for part in self.items(name):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise SettingsError(f"{name} entries must look like host=address, got {part!r}")
            result[key.strip().lower()] = value.strip()
        return result
