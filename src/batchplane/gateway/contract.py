"""What the protos cannot say about each JSON route, for the OpenAPI document.

The protos give every route's method, path, parameters and typed response
(`gateway/openapi.py` reads them from the descriptor set). They cannot give:

* the HTTP statuses intake announces through `x-http-status` (201, 202, 207, 402,
  422, …), the family's error shape, the scope and the response headers;
* the JSON bodies of `google.api.HttpBody` fields: requests taken raw so that
  intake can validate them strictly, and responses intake writes byte for byte
  (bare arrays, `null`s, a radar's fields per kind).

Both are here, keyed by the rpc's full name. The schemas take their enums,
ranges and caps from the constants the validators use; field names and shapes
are written once here and kept true by tests: a unit test runs the validators
and these schemas over the same bodies, and the end-to-end test validates real
answers against the served document.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchplane.core import scopes
from batchplane.core.json_body import INT32_MAX
from batchplane.core.plans import Plan
from batchplane.db import enrichments as enrichment_states
from batchplane.db import radars as radar_states
from batchplane.enrichment.tasks import ENTITY_TYPES, FIELDS, MAX_TASKS
from batchplane.intake.scrapes import INTEGER_OPTIONS, LLM_MODES, MAX_URLS
from batchplane.processor.sync.families import SIGNAL_TYPES
from batchplane.radars.specs import COMPANY, CONTACT, INDUSTRY, KEYWORD_TYPES, RADAR_TYPES

Schema = dict[str, Any]

LOOKUP = "batchplane.api.lookup.v1.BulkLookupService"
FRAMEWORK = "batchplane.api.framework.v1.BatchFrameworkService"
ENRICHMENT = "batchplane.api.enrichment.v1.EnrichmentOperationsService"
SCRAPE = "batchplane.api.scrape.v1.ScrapeService"
WEBHOOKS = "batchplane.api.webhooks.v1.WebhooksService"
RADARS = "batchplane.api.radars.v1.RadarService"
BATCHES = "batchplane.api.batches.v1.BatchService"


class ErrorFamily(enum.Enum):
    """Which error body a route's family answers (intake/wire_errors.py renderers)."""

    DEFAULT = "default"  # {"error": message, "code": code, …extra}
    ENRICHMENT = "enrichment"  # seed 002: {"error": "VALIDATION_ERROR", "message": …}
    RADAR = "radar"  # seed 003: {"code": status, "message", "errors": [...], …}


@dataclass(frozen=True)
class Route:
    """The HTTP facts of one rpc that its proto cannot express."""

    scope: str | None
    family: ErrorFamily = ErrorFamily.DEFAULT
    # Statuses of a successful answer, the first being the usual one.
    success: tuple[int, ...] = (200,)
    # Error statuses beyond those every route can answer (see COMMON_ERRORS).
    errors: frozenset[int] = frozenset()
    # Honours `Idempotency-Key` (contract section 2): adds 409 and 422.
    idempotent: bool = False
    # The success answer carries `Location` (the batch to poll).
    location: bool = False
    # JSON body of a route whose body maps to a google.api.HttpBody field.
    request: Schema | None = None
    # JSON body of a google.api.HttpBody response.
    response: Schema | None = None


# Every route admits the call first (401, 400/403 for the organisation context,
# 403 scope, 429 rate limit); the gateway answers 400 for a bad path or query
# parameter; 500 and 503 can always happen.
COMMON_ERRORS = frozenset({400, 401, 403, 429, 500, 503})


def nullable(schema: Schema) -> Schema:
    """`schema`, or JSON null (the validators read null as absent)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        widened = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            widened["enum"] = [*schema["enum"], None]
        return widened
    return {"anyOf": [schema, {"type": "null"}]}


def _object(
    properties: Mapping[str, Schema], *, required: tuple[str, ...] = (), closed: bool = True
) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def radar_name(kind: str) -> str:
    return f"radars.v1.{kind.capitalize()}Radar"


def bulk_item_name(kind: str) -> str:
    return f"radars.v1.{kind.capitalize()}BulkItem"


TEXT: Schema = {"type": "string", "minLength": 1, "pattern": r"\S"}
TIME: Schema = {"type": "string", "format": "date-time"}
WEBHOOK_URL: Schema = {
    "type": "string",
    "format": "uri",
    "description": "Signed item and completion webhooks go here: https, or http to a host the "
    "operator allows. Private and loopback addresses are refused.",
}


def _batch_cap(route_cap: int | None, plans: Mapping[str, Plan]) -> int:
    """The largest batch any plan of this deployment may send to a route."""
    largest = max((plan.max_batch_size for plan in plans.values()), default=1)
    return largest if route_cap is None else min(route_cap, largest)


def _cap_note(route_cap: int | None) -> str:
    route = f"the route's cap of {route_cap} and " if route_cap is not None else ""
    return f"At most the smaller of {route}the plan's max batch size (else 422 batch_too_large)."


# Fields of type google.protobuf.Value print any JSON; these are what the services put in
# them (by field full name).
NULLABLE_TEXT: Schema = {"type": ["string", "null"]}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
VALUE_FIELDS: dict[str, Schema] = {
    **{
        f"batchplane.api.lookup.v1.{message}.{field}": NULLABLE_TIME
        for message in ("BulkLookupBatch", "BulkLookupBatchWithResults")
        for field in ("started_at", "finished_at")
    },
    "batchplane.api.lookup.v1.Technology.version": NULLABLE_TEXT,
    "batchplane.api.lookup.v1.DomainResult.error": NULLABLE_TEXT,
    "batchplane.api.lookup.v1.DomainResult.looked_up_at": NULLABLE_TIME,
    "batchplane.api.scrape.v1.ScrapeJobDetail.error": NULLABLE_TEXT,
    "batchplane.api.scrape.v1.ScrapeJobDetail.started_at": NULLABLE_TIME,
    "batchplane.api.scrape.v1.ScrapeJobDetail.finished_at": NULLABLE_TIME,
    "batchplane.api.webhooks.v1.DeliveryAttempt.status_code": {"type": ["integer", "null"]},
    "batchplane.api.webhooks.v1.DeliveryAttempt.error": NULLABLE_TEXT,
    **{
        f"batchplane.api.batches.v1.Batch.{field}": NULLABLE_TIME
        for field in ("started_at", "finished_at", "cancelled_at")
    },
    "batchplane.api.batches.v1.Batch.retry_of": {"type": ["integer", "null"]},
}


# --- bodies of requests -------------------------------------------------------------------


def lookup_request(max_domains: int, plans: Mapping[str, Plan]) -> Schema:
    """`POST /api/v1/bulk/lookup` (intake/lookups.py `parse_lookup_json`)."""
    return _object(
        {
            "domains": {
                "type": "array",
                "minItems": 1,
                "maxItems": _batch_cap(max_domains, plans),
                "items": {"type": "string"},
                "description": _cap_note(max_domains),
            },
            "recompute": nullable({"type": "boolean", "default": False}),
            "max_age": nullable({"type": "integer", "minimum": 0, "maximum": 2**53}),
            "list_id": nullable({"type": "integer", "minimum": 1, "maximum": INT32_MAX}),
            "webhook_url": nullable(WEBHOOK_URL),
        },
        required=("domains",),
    )


_SYNC_ITEMS: dict[str, Schema] = {
    "IntelligenceBatch": _object({"domain": TEXT}, required=("domain",)),
    "SignalsBatch": _object(
        {
            "domain": TEXT,
            "types": nullable(
                {"type": "array", "items": {"type": "string", "enum": sorted(SIGNAL_TYPES)}}
            ),
            "since": nullable(TIME),
        },
        required=("domain",),
    ),
    "EnrichmentBatch": _object({"entity_id": TEXT, "field": TEXT}, required=("entity_id", "field")),
}


def sync_request(method: str, plans: Mapping[str, Plan]) -> Schema:
    """`{"requests": [...]}` (intake/framework_api.py `parse_requests`). An item that is not
    shaped as documented is answered alone as 400 `invalid_item`, within a 207."""
    return _object(
        {
            "requests": {
                "type": "array",
                "minItems": 1,
                "maxItems": _batch_cap(None, plans),
                "items": _SYNC_ITEMS[method],
                "description": _cap_note(None),
            }
        },
        required=("requests",),
    )


def enrichment_tasks(*, trigger: bool, plans: Mapping[str, Plan]) -> Schema:
    """`{"tasks": [...]}` (enrichment/tasks.py `parse_task_batch`)."""
    task = _object(
        {
            "entityId": {
                **TEXT,
                "description": "The entity's UUID, or a domain (a company) or a profile URL "
                "(a person) to register it.",
            },
            "field": {"type": "string", "enum": list(FIELDS)},
            "entityType": nullable({"type": "string", "enum": list(ENTITY_TYPES)}),
        },
        required=("entityId", "field"),
    )
    properties: dict[str, Schema] = {
        "tasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": _batch_cap(MAX_TASKS, plans),
            "items": task,
            "description": f"1 to {MAX_TASKS} tasks (else 400); a plan cap below that is 422.",
        }
    }
    if trigger:
        properties["webhook_url"] = nullable(WEBHOOK_URL)
    return _object(properties, required=("tasks",))


def scrape_request(plans: Mapping[str, Plan]) -> Schema:
    """`POST /v1/scrape/batch` (intake/scrapes.py `parse_scrape_json`)."""
    options: dict[str, Schema] = {
        name: nullable({"type": "integer", "minimum": low, "maximum": high, "default": default})
        for name, (low, high, default) in INTEGER_OPTIONS.items()
    }
    options["llm_mode"] = {"type": "string", "enum": list(LLM_MODES), "default": LLM_MODES[0]}
    options["date_filter"] = nullable(
        _object(
            {
                "field": {"type": "string", "minLength": 1},
                "from": nullable({"type": "string", "description": "An ISO 8601 date."}),
                "to": nullable({"type": "string", "description": "An ISO 8601 date."}),
            },
            required=("field",),
        )
    )
    return _object(
        {
            "urls": {
                "type": "array",
                "minItems": 1,
                "maxItems": _batch_cap(MAX_URLS, plans),
                "items": {"type": "string", "format": "uri", "description": "http or https."},
                "description": _cap_note(MAX_URLS),
            },
            "schema": {
                "type": "object",
                "description": "A JSON Schema, itself valid for its `$schema`, without remote "
                "`$ref`s: the shape of every extracted item.",
            },
            "organization_id": nullable(
                {"type": "string", "description": "The caller's organisation, if given."}
            ),
            "options": nullable(_object(options)),
            "webhook_url": nullable(WEBHOOK_URL),
        },
        required=("urls", "schema"),
    )


def _radar_type(kind: str) -> Schema:
    return {"type": "string", "enum": list(RADAR_TYPES[kind])}


def radar_body(kind: str, *, bulk_item: bool = False) -> Schema:
    """A single-create body (radars/specs.py `parse_radar`), or a bulk item."""
    domain: Schema = {"type": "string", "minLength": 1, "pattern": r"\S"}
    if kind == COMPANY:
        properties = {
            "domain": domain,
            "radar_type": _radar_type(kind),
            "filters": nullable({"type": "object"}),
        }
        required: tuple[str, ...] = ("domain", "radar_type")
    elif kind == CONTACT:
        properties = {
            "profile_url": {"type": "string", "format": "uri", "description": "http or https."},
            "radar_type": _radar_type(kind),
            "domain": domain,
        }
        required = ("profile_url", "radar_type", "domain")
    else:
        properties = {
            "radar_type": _radar_type(kind),
            "keyword": nullable({"type": "string", "minLength": 1, "maxLength": 200}),
        }
        required = ("radar_type",)
    if bulk_item:
        properties["custom_fields"] = {"description": "Echoed in this item's webhooks."}
    schema = _object(properties, required=required)
    if kind == INDUSTRY:
        schema["if"] = {
            "properties": {"radar_type": {"enum": sorted(KEYWORD_TYPES)}},
            "required": ["radar_type"],
        }
        schema["then"] = {"required": ["keyword"], "properties": {"keyword": {"type": "string"}}}
    return schema


def bulk_radars_request(plans: Mapping[str, Plan]) -> Schema:
    """`POST /v1/radars/bulk` (intake/radar_bulk.py). Only the envelope is checked on
    submission; each item is validated when it is created, and fails alone."""
    return _object(
        {
            "webhook_url": WEBHOOK_URL,
            "radars": {
                "type": "array",
                "minItems": 1,
                "maxItems": _batch_cap(None, plans),
                "items": {"oneOf": [_ref(bulk_item_name(k)) for k in RADAR_TYPES]},
                "description": "At most the plan's max batch size (else 400).",
            },
        },
        required=("webhook_url", "radars"),
    )


# --- bodies of HttpBody responses ---------------------------------------------------------

ENRICHMENT_STATUSES = [
    enrichment_states.PENDING,
    enrichment_states.PROCESSING,
    enrichment_states.FINISHED,
    enrichment_states.FAILED,
    enrichment_states.TIMEOUT,
]


def enrichment_object(*, with_data: bool) -> Schema:
    """Seed 002's enrichment object (db/enrichments.py `record_json`)."""
    properties: dict[str, Schema] = {
        "id": {"type": "string", "format": "uuid"},
        "createdAt": TIME,
        "updatedAt": TIME,
        "entityId": {"type": "string", "format": "uuid"},
        "entityType": {"type": "string", "enum": list(ENTITY_TYPES)},
        "field": {"type": "string", "enum": list(FIELDS)},
        "status": {"type": "string", "enum": ENRICHMENT_STATUSES},
        "error": nullable({"type": "string"}),
        "dataFound": nullable(
            {"type": "boolean", "description": "null until the enrichment is terminal."}
        ),
        "createdBy": {"type": "string"},
        "orgId": {"type": "string"},
        "globalEnrichmentId": nullable({"type": "string"}),
        "creditTransactionId": nullable({"type": "string"}),
    }
    if with_data:
        properties["data"] = {"description": "The field's data; null until finished."}
    return _object(properties, required=tuple(properties))


def radar_object(kind: str) -> Schema:
    """A radar as single create answers it (radars/creation.py `radar_json`)."""
    config: dict[str, Schema] = {
        COMPANY: {"domain": {"type": "string"}, "filters": {"type": "object"}},
        CONTACT: {"profile_url": {"type": "string"}, "domain": {"type": "string"}},
        INDUSTRY: {"keyword": nullable({"type": "string"})},
    }[kind]
    properties: dict[str, Schema] = {
        "id": {"type": "string"},
        "type": {"const": kind},
        "radar_type": _radar_type(kind),
        **config,
        "status": {"type": "string", "enum": [radar_states.ACTIVE, radar_states.INACTIVE]},
        "created_at": TIME,
    }
    return _object(properties, required=tuple(properties))


RADAR = {"oneOf": [_ref(radar_name(kind)) for kind in RADAR_TYPES]}

_BULK_ITEM_COMMON: dict[str, Schema] = {
    "bulk_id": {"type": "string"},
    "item_index": {"type": "integer", "minimum": 0},
    "custom_fields": {"description": "As sent with the item; null when none."},
}
_FINISHED_AT: dict[str, Schema] = {
    "completed_at": TIME,
    "discovered_at": {**TIME, "description": "Equal to completed_at (deprecated alias)."},
}


def radar_failure_body(*, with_envelope: bool = False) -> Schema:
    """Seed 003's failure: single create's error body and a `radar_failure` payload."""
    properties: dict[str, Schema] = {
        "code": {"type": "integer", "description": "The HTTP status of the failure."},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": _object(
                {"field": {"type": "string"}, "message": {"type": "string"}},
                required=("field", "message"),
            ),
            "description": "One entry per failing field.",
        },
        "conflicting_radar_id": {"type": "string", "description": "With a 409."},
        "reason": {"const": "minute", "description": "With the bulk route's 429."},
    }
    required: tuple[str, ...] = ("code", "message", "errors")
    if with_envelope:
        properties = {
            "event": {"const": "radar_failure"},
            **_BULK_ITEM_COMMON,
            **properties,
            **_FINISHED_AT,
        }
        del properties["reason"]
        required = ("event", *_BULK_ITEM_COMMON, *required, *_FINISHED_AT)
    return _object(properties, required=required)


def _bulk_item_states() -> Schema:
    processing = _object(
        {
            "item_index": _BULK_ITEM_COMMON["item_index"],
            "status": {"const": "processing"},
            "custom_fields": _BULK_ITEM_COMMON["custom_fields"],
        },
        required=("item_index", "status", "custom_fields"),
    )
    created = _object(
        {
            "event": {"const": "radar_created"},
            **_BULK_ITEM_COMMON,
            "data": RADAR,
            **_FINISHED_AT,
        },
        required=("event", *_BULK_ITEM_COMMON, "data", *_FINISHED_AT),
    )
    return {"oneOf": [processing, created, _ref("radars.v1.RadarFailure")]}


BULK_ACCEPTED = _object(
    {
        "bulk_id": {"type": "string", "pattern": "^bulk_[0-9]+$"},
        "summary": _object(
            {"total": {"type": "integer"}, "queued": {"type": "integer"}},
            required=("total", "queued"),
        ),
    },
    required=("bulk_id", "summary"),
)
BULK_STATUS = _object(
    {
        "bulk_id": {"type": "string"},
        "status": {"type": "string", "enum": ["processing", "completed"]},
        "radars": {"type": "array", "items": _bulk_item_states()},
    },
    required=("bulk_id", "status", "radars"),
)
RADAR_LIST = _object(
    {
        "radars": {"type": "array", "items": RADAR},
        "next_offset": nullable(
            {"type": "integer", "description": "The next page's offset; null on the last."}
        ),
    },
    required=("radars", "next_offset"),
)


def components() -> dict[str, Schema]:
    """Schemas referenced by name from the route bodies above."""
    named: dict[str, Schema] = {
        "radars.v1.RadarFailure": radar_failure_body(with_envelope=True),
        "enrichment.v1.Enrichment": enrichment_object(with_data=False),
        "enrichment.v1.EnrichmentWithData": enrichment_object(with_data=True),
    }
    for kind in RADAR_TYPES:
        named[radar_name(kind)] = radar_object(kind)
        named[bulk_item_name(kind)] = radar_body(kind, bulk_item=True)
    return named


# --- error bodies -------------------------------------------------------------------------

DEFAULT_ERROR = _object(
    {
        "error": {"type": "string", "description": "What went wrong, for people."},
        "code": {"type": "string", "description": "A machine code, e.g. `batch_too_large`."},
        "max_batch_size": {"type": "integer", "description": "With `batch_too_large`."},
        "quota": {"type": "integer", "description": "With `quota_exceeded`."},
        "scope": {"type": "string", "description": "With `insufficient_scope`."},
    },
    required=("error", "code"),
    closed=False,
)
ENRICHMENT_ERROR = _object(
    {
        "error": {
            "type": "string",
            "description": "`VALIDATION_ERROR` (400), `UNAUTHORIZED` (401), `INTERNAL_ERROR` "
            "(500), or the framework's code in upper case (`INSUFFICIENT_SCOPE`, …).",
        },
        "message": {"type": "string"},
    },
    required=("error", "message"),
)
ERROR_SCHEMAS: dict[ErrorFamily, Schema] = {
    ErrorFamily.DEFAULT: DEFAULT_ERROR,
    ErrorFamily.ENRICHMENT: ENRICHMENT_ERROR,
    ErrorFamily.RADAR: radar_failure_body(),
}
# Statuses the gateway itself may answer in the default shape, whatever the family:
# a bad path or query parameter (400), a body over the limit (413), intake down (503).
GATEWAY_STATUSES = frozenset({400, 413, 503})

ERROR_MEANINGS: dict[int, str] = {
    400: "Malformed JSON, a bad path or query parameter, or `Organization ID is missing` "
    "(a token bound to no organisation, without `X-Organization-Id`).",
    401: "Missing, malformed, unknown or revoked token.",
    402: "The prepaid credits cannot pay for the request: nothing is charged or stored.",
    403: "`insufficient_scope`, or `organization_forbidden` (`X-Organization-Id` names an "
    "organisation the token's user is not in).",
    404: "Unknown id, or one of another organisation.",
    409: "A conflict with the current state: `idempotency_conflict` (a request with this "
    "`Idempotency-Key` is still in flight), or the route's own (see its description).",
    413: "The body is larger than the gateway accepts.",
    422: "A well-formed body with unacceptable fields (`invalid_request`, `unknown_field`, "
    "`batch_too_large`, …), or `idempotency_key_reuse`.",
    429: "`rate_limited` (per-minute buckets; see `Retry-After`), or `quota_exceeded` (the "
    "batch would pass the monthly usage quota; nothing is metered).",
    500: "An unexpected failure; never caused by bad input.",
    503: "A dependency is briefly unavailable; retry later.",
}
# Where a family's seed words a status its own way.
FAMILY_MEANINGS: dict[tuple[ErrorFamily, int], str] = {
    (ErrorFamily.ENRICHMENT, 400): "`VALIDATION_ERROR`: malformed JSON, a bad shape, no or "
    "more than 200 tasks, an unknown field, or `Organization ID is missing`. A bad path or "
    "query parameter is answered by the gateway in the default shape.",
    (ErrorFamily.ENRICHMENT, 422): "`BATCH_TOO_LARGE` (the plan's cap is below 200 tasks), "
    "or `IDEMPOTENCY_KEY_REUSE`.",
    (ErrorFamily.RADAR, 400): "`Validation error`: `errors` names every failing field. Also a "
    "malformed body, or an invalid bulk envelope. A bad path or query parameter is answered "
    "by the gateway in the default shape.",
    (ErrorFamily.RADAR, 409): "`Radar already exists`: `conflicting_radar_id` is the active "
    "radar with the same configuration; or, on bulk, `idempotency_conflict`.",
    (ErrorFamily.RADAR, 429): "Rate limited (the bulk route's own per-minute bucket says "
    '`"reason": "minute"`), or the monthly quota would be passed.',
}


# --- the routes ---------------------------------------------------------------------------


def routes(*, max_domains: int, plans: Mapping[str, Plan]) -> dict[str, Route]:
    """Every JSON route's HTTP facts, by rpc full name (`package.Service.Method`)."""
    table: dict[str, Route] = {
        f"{LOOKUP}.CreateBulkLookup": Route(
            scopes.LOOKUP_WRITE,
            success=(202,),
            errors=frozenset({402, 422}),
            idempotent=True,
            location=True,
            request=lookup_request(max_domains, plans),
        ),
        f"{LOOKUP}.GetBulkLookup": Route(scopes.LOOKUP_WRITE, errors=frozenset({404})),
        f"{LOOKUP}.GetList": Route(scopes.LOOKUP_WRITE, errors=frozenset({404})),
        f"{FRAMEWORK}.GetUsage": Route(None),
        f"{ENRICHMENT}.TriggerEnrichments": Route(
            scopes.ENRICHMENT_WRITE,
            ErrorFamily.ENRICHMENT,
            (202,),
            frozenset({402, 422}),
            idempotent=True,
            request=enrichment_tasks(trigger=True, plans=plans),
            response={"type": "array", "items": _ref("enrichment.v1.Enrichment")},
        ),
        f"{ENRICHMENT}.QueryEnrichments": Route(
            scopes.ENRICHMENT_READ,
            ErrorFamily.ENRICHMENT,
            errors=frozenset({422}),
            request=enrichment_tasks(trigger=False, plans=plans),
            response={"type": "array", "items": _ref("enrichment.v1.Enrichment")},
        ),
        f"{ENRICHMENT}.GetEnrichment": Route(
            scopes.ENRICHMENT_READ,
            ErrorFamily.ENRICHMENT,
            errors=frozenset({404}),
            response=_ref("enrichment.v1.EnrichmentWithData"),
        ),
        f"{SCRAPE}.CreateScrapeBatch": Route(
            scopes.SCRAPE_WRITE,
            errors=frozenset({402, 422}),
            idempotent=True,
            request=scrape_request(plans),
        ),
        f"{SCRAPE}.GetScrapeBatch": Route(scopes.SCRAPE_READ, errors=frozenset({404})),
        f"{SCRAPE}.GetScrapeJob": Route(scopes.SCRAPE_READ, errors=frozenset({404})),
        f"{WEBHOOKS}.ListDeliveries": Route(None),
        f"{WEBHOOKS}.RedeliverDelivery": Route(None, success=(202,), errors=frozenset({404})),
        f"{RADARS}.GetRadar": Route(
            scopes.RADARS_READ, ErrorFamily.RADAR, errors=frozenset({404}), response=RADAR
        ),
        f"{RADARS}.ListRadars": Route(scopes.RADARS_READ, ErrorFamily.RADAR, response=RADAR_LIST),
        f"{RADARS}.DeactivateRadar": Route(
            scopes.RADARS_WRITE, ErrorFamily.RADAR, errors=frozenset({404}), response=RADAR
        ),
        f"{RADARS}.CreateBulkRadars": Route(
            scopes.RADARS_WRITE,
            ErrorFamily.RADAR,
            (202,),
            idempotent=True,
            request=bulk_radars_request(plans),
            response=BULK_ACCEPTED,
        ),
        # The scope of batch control is the batch family's (read or write): no one scope.
        f"{BATCHES}.GetBatch": Route(None, errors=frozenset({404})),
        f"{BATCHES}.CancelBatch": Route(None, errors=frozenset({404, 409})),
        f"{BATCHES}.RetryFailedItems": Route(
            None, success=(201,), errors=frozenset({402, 404, 409}), idempotent=True
        ),
        f"{RADARS}.GetBulkRadars": Route(
            scopes.RADARS_READ, ErrorFamily.RADAR, errors=frozenset({404}), response=BULK_STATUS
        ),
    }
    for method, scope in (
        ("IntelligenceBatch", scopes.INTELLIGENCE_READ),
        ("SignalsBatch", scopes.SIGNALS_READ),
        ("EnrichmentBatch", scopes.ENRICHMENT_READ),
    ):
        table[f"{FRAMEWORK}.{method}"] = Route(
            scope,
            success=(200, 207),
            errors=frozenset({422}),
            idempotent=True,
            request=sync_request(method, plans),
        )
    for method, kind in (
        ("CreateCompanyRadar", COMPANY),
        ("CreateContactRadar", CONTACT),
        ("CreateIndustryRadar", INDUSTRY),
    ):
        table[f"{RADARS}.{method}"] = Route(
            scopes.RADARS_WRITE,
            ErrorFamily.RADAR,
            (201,),
            frozenset({402, 409}),
            request=radar_body(kind),
            response=_ref(radar_name(kind)),
        )
    return table
