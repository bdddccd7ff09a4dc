"""The rendered Envoy configuration is accepted by the real Envoy binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from batchplane.core.settings import Settings
from batchplane.gateway import config


def test_rendered_config_validates_with_envoy(tmp_path: Path) -> None:
    path = config.write(Settings(), tmp_path / "envoy.yaml")

    done = subprocess.run(
        [config.envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


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
    ]
