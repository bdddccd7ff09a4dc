"""The OpenAPI document: valid OpenAPI 3.1, one operation per http rule, and request
schemas that accept exactly what intake's validators accept."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from openapi_spec_validator import OpenAPIV31SpecValidator
from tests.support.openapi import Schemas, operations, resolve

from batchplane.cli.main import main as cli
from batchplane.core.clock import SystemClock
from batchplane.core.errors import InvalidRequest
from batchplane.core.settings import KafkaSettings, LookupSettings, Settings
from batchplane.enrichment.tasks import parse_task_batch
from batchplane.gateway import config, contract, openapi
from batchplane.intake.framework_api import parse_requests
from batchplane.intake.lookups import parse_lookup_json
from batchplane.intake.radar_bulk import BulkRadarIntake
from batchplane.intake.scrapes import parse_scrape_json
from batchplane.intake.server import SERVICE_NAMES
from batchplane.intake.webhook_urls import WebhookUrlPolicy
from batchplane.radars.specs import RadarInvalid, parse_radar

SETTINGS = Settings()
DOCUMENT = config.openapi_document(SETTINGS)
SCHEMAS = Schemas(DOCUMENT)
BY_ID = {operation.id: operation for operation in operations(DOCUMENT)}


def _http_rules() -> set[tuple[str, str, str]]:
    """(verb, template, rpc) of every binding, read from the generated modules (not from
    the descriptor set the document is built from)."""
    rules = set()
    pool = descriptor_pool.Default()
    for name in SERVICE_NAMES:
        for method in pool.FindServiceByName(name).methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            for binding in (rule, *rule.additional_bindings):
                verb = binding.WhichOneof("pattern")
                assert verb is not None
                rules.add((verb, getattr(binding, verb), f"/{name}/{method.name}"))
    return rules


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    errors = [str(error.message) for error in OpenAPIV31SpecValidator(DOCUMENT).iter_errors()]
    assert errors == []


def test_every_http_rule_is_one_documented_operation() -> None:
    documented = {
        (operation.method, operation.path, operation.spec["x-grpc-method"])
        for operation in operations(DOCUMENT)
        if "x-grpc-method" in operation.spec
    }
    assert len(_http_rules()) >= 23
    assert documented == _http_rules()
    gateway_own = {op.path for op in operations(DOCUMENT) if "x-grpc-method" not in op.spec}
    assert gateway_own == {config.HEALTH_PATH, config.OPENAPI_PATH}


def test_the_contract_has_an_entry_for_each_rpc_with_an_http_rule() -> None:
    rpcs = {grpc_method.strip("/").replace("/", ".") for _, _, grpc_method in _http_rules()}
    routes = contract.routes(max_domains=100, plans=SETTINGS.plans)
    served = {rpc for rpc in routes if rpc.rsplit(".", 1)[0] in SERVICE_NAMES}
    assert rpcs - served == set(), "add these rpcs to gateway/contract.py"
    assert served - rpcs == set(), "these rpcs have no http rule any more"


def test_operations_state_their_scope_and_errors() -> None:
    lookup = BY_ID["CreateBulkLookup"].spec
    assert lookup["security"] == [
        {"bearerAuth": ["lookup.write"]},
        {"apiKeyAuth": ["lookup.write"]},
    ]
    assert set(lookup["responses"]) == {
        "202",
        "400",
        "401",
        "402",
        "403",
        "409",
        "413",
        "422",
        "429",
        "500",
        "503",
    }
    assert lookup["responses"]["202"]["headers"]["Location"]["required"] is True
    assert BY_ID["GetUsage"].spec["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert set(BY_ID["IntelligenceBatch"].spec["responses"]) >= {"200", "207"}
    radar_409 = resolve(DOCUMENT, BY_ID["CreateCompanyRadar"].spec["responses"]["409"])
    assert (
        resolve(DOCUMENT, radar_409["content"]["application/json"]["schema"])
        == (contract.ERROR_SCHEMAS[contract.ErrorFamily.RADAR])
    )


def test_paths_and_queries_come_from_the_request_messages() -> None:
    by_name = {p["name"]: p for p in BY_ID["GetBulkLookup"].spec["parameters"] if "name" in p}
    assert by_name["id"]["in"] == "path"
    assert by_name["id"]["schema"] == {"type": "integer", "format": "int32"}
    queries = [p["name"] for p in BY_ID["ListRadars"].spec["parameters"] if p.get("in") == "query"]
    assert queries == ["limit", "offset"]
    assert "requestBody" not in BY_ID["ListRadars"].spec


def test_typed_responses_print_proto_names_and_always_printed_fields() -> None:
    batch = DOCUMENT["components"]["schemas"]["lookup.v1.BulkLookupBatch"]
    assert "requested_count" in batch["properties"]
    assert "requested_count" in batch["required"]
    # A message field is omitted when unset; `links` is set by the service but not required.
    assert "links" not in batch["required"]
    assert batch["properties"]["started_at"]["type"] == ["string", "null"]
    assert batch["properties"]["id"]["description"] == "Batch id, unique across the platform."
    assert batch["description"] == "A bulk lookup batch: the seed's 202 body."


def test_every_google_protobuf_value_in_a_documented_message_has_a_declared_type() -> None:
    protos = openapi.Protos(config.descriptor_path().read_bytes())
    untyped = [
        f"{name}.{field.name}"
        for name, message in protos.messages.items()
        if openapi.component_name(name) in DOCUMENT["components"]["schemas"]
        for field in message.field
        if field.type_name == ".google.protobuf.Value"
        and f"{name}.{field.name}" not in contract.VALUE_FIELDS
    ]
    assert untyped == []


def test_raw_json_bodies_take_descriptions_from_the_typed_fields() -> None:
    schema = BY_ID["CreateBulkLookup"].spec["requestBody"]["content"]["application/json"]
    domains = schema["schema"]["properties"]["domains"]
    assert domains["description"].startswith("Domains or URLs, 1 to 100.")
    assert domains["maxItems"] == 100


def test_the_gateway_serves_the_document_as_a_direct_response() -> None:
    rendered = config.render(SETTINGS)
    manager = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route_config = manager["typed_config"]["route_config"]
    served = route_config["virtual_hosts"][0]["routes"][0]
    body = served["direct_response"]["body"]["inline_string"]
    assert served["match"]["path"] == "/openapi.json"
    assert json.loads(body) == json.loads(json.dumps(DOCUMENT))
    assert route_config["max_direct_response_body_size_bytes"] >= len(body.encode())


def test_the_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["gateway", "openapi"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["paths"].keys() == DOCUMENT["paths"].keys()


# --- request schemas against the validators -----------------------------------------------

WEBHOOKS = WebhookUrlPolicy([], [])
SUFFIXES = frozenset({"test"})


def _lookup(raw: bytes) -> object:
    return parse_lookup_json(raw, LookupSettings(), max_domains=100)


def _scrape(raw: bytes) -> object:
    return parse_scrape_json(raw, caller_org="org_1", cap=50, webhook_urls=WEBHOOKS)


def _tasks(trigger: bool) -> Callable[[bytes], object]:
    return lambda raw: parse_task_batch(raw, cap=200, extra_suffixes=SUFFIXES, trigger=trigger)


def _radar(kind: str) -> Callable[[bytes], object]:
    def parse(raw: bytes) -> object:
        try:
            return parse_radar(kind, orjson.loads(raw), extra_suffixes=SUFFIXES)
        except RadarInvalid as error:
            raise InvalidRequest(str(error)) from None

    return parse


def _bulk_envelope(raw: bytes) -> object:
    # The envelope alone is checked on submission; items are validated when created.
    intake = BulkRadarIntake(
        None,  # type: ignore[arg-type]  # no database: only the envelope is read
        kafka=KafkaSettings(),
        clock=SystemClock(),
        webhook_urls=WEBHOOKS,
    )
    return intake._envelope(raw, 250)


def _sync(raw: bytes) -> object:
    return parse_requests(raw, cap=250)


HOOK = "https://hooks.example.com/x"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}
COMPANY = {"domain": "acme.test", "radar_type": "technology_changes"}

# operation → (validator, bodies it accepts, bodies it refuses)
CASES: dict[str, tuple[Callable[[bytes], object], list[Any], list[Any]]] = {
    "CreateBulkLookup": (
        _lookup,
        [
            {"domains": ["a.test"]},
            {"domains": ["a.test", "https://B.test/x"], "recompute": True, "max_age": 0,
             "list_id": 7, "webhook_url": HOOK},
            {"domains": ["a.test"], "recompute": None, "list_id": None},
            {"domains": ["x"] * 100},
        ],
        [
            {}, {"domains": []}, {"domains": "a.test"}, {"domains": [1]},
            {"domains": ["x"] * 101}, {"domains": ["a.test"], "recompute": "yes"},
            {"domains": ["a.test"], "max_age": -1}, {"domains": ["a.test"], "list_id": 0},
            {"domains": ["a.test"], "list_id": 1.5}, {"domains": ["a.test"], "extra": 1},
            ["a.test"],
        ],
    ),
    "IntelligenceBatch": (
        _sync,
        [{"requests": [{"domain": "a.test"}]}, {"requests": [{"domain": "a.test"}] * 250}],
        [{}, {"requests": []}, {"requests": {}}, {"requests": [{"domain": "a.test"}] * 251},
         {"requests": [{"domain": "a.test"}], "more": 1}],
    ),
    "TriggerEnrichments": (
        _tasks(trigger=True),
        [
            {"tasks": [{"entityId": "acme.test", "field": "emails"}]},
            {"tasks": [{"entityId": "https://people.test/ann", "field": "summary",
                        "entityType": "person"}], "webhook_url": HOOK},
            {"tasks": [{"entityId": "acme.test", "field": "phones", "entityType": None}]},
        ],
        [
            {}, {"tasks": []}, {"tasks": [{"entityId": "acme.test"}]},
            {"tasks": [{"entityId": "acme.test", "field": "nope"}]},
            {"tasks": [{"entityId": " ", "field": "emails"}]},
            {"tasks": [{"entityId": "acme.test", "field": "emails", "entityType": "robot"}]},
            {"tasks": [{"entityId": "acme.test", "field": "emails", "x": 1}]},
            {"tasks": [{"entityId": "acme.test", "field": "emails"}] * 201},
            {"tasks": [{"entityId": "acme.test", "field": "emails"}], "extra": True},
        ],
    ),
    "QueryEnrichments": (
        _tasks(trigger=False),
        [{"tasks": [{"entityId": "acme.test", "field": "emails"}]}],
        [{"tasks": [{"entityId": "acme.test", "field": "emails"}], "webhook_url": HOOK}],
    ),
    "CreateScrapeBatch": (
        _scrape,
        [
            {"urls": ["https://a.test/"], "schema": SCHEMA},
            {"urls": ["http://a.test/"] * 50, "schema": SCHEMA, "organization_id": None,
             "options": {"max_items_per_url": 500, "max_total_items": 1, "parallel_jobs": 10,
                         "timeout_per_url": 300, "llm_mode": "structured",
                         "date_filter": {"field": "date", "from": "2024-01-01", "to": None}},
             "webhook_url": HOOK},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": None},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"date_filter": None}},
        ],
        [
            {"schema": SCHEMA}, {"urls": ["https://a.test/"]},
            {"urls": [], "schema": SCHEMA}, {"urls": ["https://a.test/"] * 51, "schema": SCHEMA},
            {"urls": ["https://a.test/"], "schema": []},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"parallel_jobs": 11}},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"max_items_per_url": 0}},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"llm_mode": "llm"}},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"llm_mode": None}},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "options": {"x": 1}},
            {"urls": ["https://a.test/"], "schema": SCHEMA,
             "options": {"date_filter": {"from": "2024-01-01"}}},
            {"urls": ["https://a.test/"], "schema": SCHEMA,
             "options": {"date_filter": {"field": "d", "when": "x"}}},
            {"urls": ["https://a.test/"], "schema": SCHEMA, "other": 1},
        ],
    ),
    "CreateCompanyRadar": (
        _radar("company"),
        [COMPANY, {**COMPANY, "radar_type": "website_changes", "filters": {"a": 1}},
         {**COMPANY, "filters": None}],
        [{}, {"domain": "acme.test"}, {**COMPANY, "radar_type": "profile_changes"},
         {**COMPANY, "filters": []}, {**COMPANY, "keyword": "x"}, {**COMPANY, "domain": ""}],
    ),
    "CreateContactRadar": (
        _radar("contact"),
        [{"profile_url": "https://people.test/ann", "radar_type": "profile_changes",
          "domain": "acme.test"}],
        [{"profile_url": "https://people.test/ann", "radar_type": "profile_changes"},
         {"domain": "acme.test", "radar_type": "profile_changes"}],
    ),
    "CreateIndustryRadar": (
        _radar("industry"),
        [{"radar_type": "industry_news"}, {"radar_type": "industry_news", "keyword": None},
         {"radar_type": "industry_mentions", "keyword": "robots"}],
        [{"radar_type": "industry_mentions"}, {"radar_type": "industry_job_openings",
                                               "keyword": None},
         {"radar_type": "industry_news", "keyword": "x" * 201},
         {"radar_type": "industry_news", "keyword": ""}, {"radar_type": "technology_changes"}],
    ),
    "CreateBulkRadars": (
        _bulk_envelope,
        [{"webhook_url": HOOK, "radars": [COMPANY]},
         {"webhook_url": HOOK, "radars": [{**COMPANY, "custom_fields": {"crm": 1}},
                                          {"radar_type": "industry_news"}]}],
        [{"radars": [COMPANY]}, {"webhook_url": HOOK}, {"webhook_url": HOOK, "radars": []},
         {"webhook_url": HOOK, "radars": [COMPANY] * 251},
         {"webhook_url": HOOK, "radars": [COMPANY], "extra": 1}],
    ),
}  # fmt: skip


def _accepted_by(validator: Callable[[bytes], object], body: Any) -> bool:
    try:
        validator(orjson.dumps(body))
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize("operation_id", sorted(CASES))
def test_request_schema_and_validator_agree(operation_id: str) -> None:
    validator, accepted, refused = CASES[operation_id]
    schema = SCHEMAS.request(BY_ID[operation_id])
    for body in accepted:
        assert _accepted_by(validator, body), body
        assert schema.is_valid(body), (body, list(schema.iter_errors(body)))
    for body in refused:
        assert not _accepted_by(validator, body), body
        assert not schema.is_valid(body), body


def test_every_raw_json_body_has_agreement_cases() -> None:
    raw_bodies = {
        op.id
        for op in operations(DOCUMENT)
        if "x-grpc-method" in op.spec and op.spec.get("requestBody", {}).get("required")
    }
    # The three synchronous routes share one envelope validator; one stands for all.
    assert raw_bodies - set(CASES) == {"SignalsBatch", "EnrichmentBatch"}
