"""The rendered Envoy configuration is accepted by the real Envoy binary."""

from __future__ import annotations

from pathlib import Path

from tests.support.envoy import assert_envoy_accepts

from batchplane.core.settings import Settings
from batchplane.gateway import config


def test_rendered_config_validates_with_envoy(tmp_path: Path) -> None:
    path = config.write(Settings(), tmp_path / "envoy.yaml")

    assert_envoy_accepts(path)


def test_listener_and_admin_bind_loopback_by_default() -> None:
    rendered = config.render(Settings())
    listener = rendered["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_every_public_service_is_transcoded() -> None:
    filters = config.render(Settings())["static_resources"]["listeners"][0]["filter_chains"][0]
    manager = filters["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]
    # The Lua filter must see responses after the transcoder turned them into JSON.
    assert names.index("envoy.filters.http.lua") < names.index(
        "envoy.filters.http.grpc_json_transcoder"
    )
    transcoder = manager["http_filters"][names.index("envoy.filters.http.grpc_json_transcoder")]
    assert transcoder["typed_config"]["services"] == [
        "batchplane.api.lookup.v1.BulkLookupService",
        "batchplane.api.framework.v1.BatchFrameworkService",
        "batchplane.api.enrichment.v1.EnrichmentOperationsService",
        "batchplane.api.scrape.v1.ScrapeService",
        "batchplane.api.webhooks.v1.WebhooksService",
        "batchplane.api.radars.v1.RadarService",
        "batchplane.api.batches.v1.BatchService",
    ]


def test_tracing_and_json_logs_validate_with_envoy(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BATCHPLANE_LOG_FORMAT": "json",
            "BATCHPLANE_OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318/",
        }
    )
    path = config.write(settings, tmp_path / "envoy.yaml")
    assert_envoy_accepts(path)
    rendered = config.render(settings)
    manager = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    service = manager["typed_config"]["tracing"]["provider"]["typed_config"]["http_service"]
    assert service["http_uri"]["uri"] == "http://collector.example:4318/v1/traces"
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    address = clusters[config.COLLECTOR_CLUSTER]["load_assignment"]["endpoints"][0]
    assert address["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "collector.example",
        "port_value": 4318,
    }
    assert rendered["application_log_config"]["log_format"]["json_format"]["service"] == "gateway"


def test_no_tracing_and_plain_logs_by_default() -> None:
    rendered = config.render(Settings())
    manager = rendered["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert "tracing" not in manager["typed_config"]
    assert [c["name"] for c in rendered["static_resources"]["clusters"]] == [config.INTAKE_CLUSTER]
    assert "application_log_config" not in rendered
