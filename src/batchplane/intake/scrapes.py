"""Accepting scrape batches (seed 004): strict validation of URLs, schema and options,
then metering, charging, storing and queueing in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dateutil import parser as date_parser
from jsonschema import exceptions as schema_errors
from jsonschema import validators

from batchplane.core.clock import Clock
from batchplane.core.errors import InvalidRequest
from batchplane.core.json_body import parse_object, reject_unknown
from batchplane.core.plans import Plan
from batchplane.core.settings import KafkaSettings
from batchplane.db.engine import Database
from batchplane.db.models import Batch
from batchplane.intake.acceptance import accept_batch
from batchplane.intake.auth import Caller
from batchplane.intake.webhook_urls import WebhookUrlPolicy

FAMILY = "scrape"
MAX_URLS = 50
_FIELDS = frozenset({"urls", "schema", "organization_id", "options", "webhook_url"})
# name → (minimum, maximum, default), from the seed's options table.
INTEGER_OPTIONS: Mapping[str, tuple[int, int, int]] = {
    "max_items_per_url": (1, 500, 50),
    "max_total_items": (1, 5000, 500),
    "parallel_jobs": (1, 10, 3),
    "timeout_per_url": (1, 300, 30),
}
LLM_MODES = ("structured",)
_OPTION_FIELDS = frozenset({*INTEGER_OPTIONS, "date_filter", "llm_mode"})


@dataclass(frozen=True)
class ScrapeRequest:
    urls: list[str]
    schema: dict[str, Any]
    options: dict[str, Any]
    webhook_url: str | None


def parse_scrape_json(
    raw: bytes, *, caller_org: str, cap: int, webhook_urls: WebhookUrlPolicy
) -> ScrapeRequest:
    """Read the seed's body; every problem is a 422 naming its field (400 for bad JSON)."""
    body = parse_object(raw)
    reject_unknown(body, _FIELDS)
    org = body.get("organization_id")
    if org is not None and org != caller_org:
        raise InvalidRequest("organization_id must be the caller's organization")
    return ScrapeRequest(
        urls=_urls(body.get("urls"), cap),
        schema=_schema(body.get("schema")),
        options=_options(body.get("options")),
        webhook_url=webhook_urls.check(body.get("webhook_url")),
    )


def _urls(value: Any, cap: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("urls must be a non-empty array")
    if len(value) > cap:
        raise InvalidRequest(
            f"urls must have at most {cap} entries, got {len(value)}",
            code="batch_too_large",
            extra={"max_batch_size": cap},
        )
    for index, url in enumerate(value):
        if not isinstance(url, str) or not _is_http_url(url):
            raise InvalidRequest(f"urls[{index}] must be an http or https URL")
    return value


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _schema(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest("schema must be a JSON Schema object")
    remote = _remote_ref(value)
    if remote is not None:
        raise InvalidRequest(f"schema $ref must point inside the schema (#…), got {remote!r}")
    try:
        validators.validator_for(value).check_schema(value)
    except schema_errors.SchemaError as error:
        path = "/".join(str(p) for p in error.path)
        where = f" at {path}" if path else ""
        raise InvalidRequest(f"schema is not a valid JSON Schema{where}: {error.message}") from None
    return value


def _remote_ref(value: Any) -> str | None:
    """The first `$ref` that names another document: nothing is ever fetched for a schema."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    return next((r for r in map(_remote_ref, children) if r is not None), None)


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidRequest("options must be an object")
    reject_unknown(value, _OPTION_FIELDS, where="options.")
    options: dict[str, Any] = {}
    for name, (low, high, default) in INTEGER_OPTIONS.items():
        raw = value.get(name)
        if raw is None:
            options[name] = default
        elif isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise InvalidRequest(f"options.{name} must be an integer from {low} to {high}")
        else:
            options[name] = raw
    mode = value.get("llm_mode", "structured")
    if mode not in LLM_MODES:
        raise InvalidRequest(
            f"options.llm_mode must be one of {', '.join(LLM_MODES)} (no other mode is configured)"
        )
    options["llm_mode"] = mode
    options["date_filter"] = _date_filter(value.get("date_filter"))
    return options


def _date_filter(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("options.date_filter must be an object or null")
    reject_unknown(value, frozenset({"field", "from", "to"}), where="options.date_filter.")
    field = value.get("field")
    if not isinstance(field, str) or not field:
        raise InvalidRequest("options.date_filter.field must be a non-empty string")
    bounds: dict[str, Any] = {"field": field}
    for name in ("from", "to"):
        raw = value.get(name)
        if raw is not None:
            if not isinstance(raw, str):
                raise InvalidRequest(f"options.date_filter.{name} must be an ISO 8601 date")
            try:
                date_parser.isoparse(raw)
            except ValueError:
                raise InvalidRequest(
                    f"options.date_filter.{name} must be an ISO 8601 date"
                ) from None
        bounds[name] = raw
    return bounds


class ScrapeIntake:
    """Stores accepted scrape batches and queues one work item per URL."""

    def __init__(
        self,
        database: Database,
        *,
        credits_per_url: int,
        kafka: KafkaSettings,
        clock: Clock,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._unit = credits_per_url
        self._kafka = kafka
        self._clock = clock
        self._on_commit = on_commit

    async def submit(self, caller: Caller, plan: Plan, request: ScrapeRequest) -> Batch:
        async with self._database.transaction() as session:
            accepted = await accept_batch(
                session,
                caller=caller,
                plan=plan,
                family=FAMILY,
                inputs=request.urls,
                params={
                    "schema": request.schema,
                    "options": request.options,
                    "webhook_url": request.webhook_url,
                },
                unit_credits=self._unit,
                kafka=self._kafka,
                now=self._clock.now(),
            )
        self._on_commit()
        return accepted.batch
