"""The OpenAPI 3.1 document of every JSON route, generated from the descriptor set.

Each rpc with a `google.api.http` rule, in the services the gateway transcodes,
is one operation: method and path from the rule, path and query parameters
from the request message, typed bodies from the message descriptors as the
transcoder prints them (its print options are passed in), and descriptions
from the proto comments (the descriptor set keeps source info).
`gateway/contract.py` adds what a proto cannot say: statuses, scopes, error
shapes, headers and the JSON carried by `google.api.HttpBody` fields.

The gateway serves the document at `/openapi.json`; `batchplane gateway openapi`
prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from batchplane.core.plans import Plan
from batchplane.gateway import contract
from batchplane.gateway.contract import ErrorFamily, Route, Schema

OPENAPI_VERSION = "3.1.0"
HTTP_BODY = "google.api.HttpBody"
_COMPONENT_PREFIX = "batchplane.api."
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(=[^}]*)?\}")

Field = descriptor_pb2.FieldDescriptorProto

_SCALARS: dict[int, Schema] = {
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    # The proto3 JSON mapping prints 64-bit integers as strings.
    Field.TYPE_INT64: {"type": "string", "format": "int64"},
    Field.TYPE_SINT64: {"type": "string", "format": "int64"},
    Field.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    Field.TYPE_UINT64: {"type": "string", "format": "uint64"},
    Field.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SINT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    Field.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    Field.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# Well-known types, printed by the proto3 JSON mapping as these JSON values.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.NullValue": {"type": "null"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Any": {"type": "object", "required": ["@type"]},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "uint32"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}
# Source-info path numbers (descriptor.proto field numbers).
_FILE_MESSAGES, _FILE_SERVICES = 4, 6
_MESSAGE_FIELDS, _MESSAGE_NESTED = 2, 3
_SERVICE_METHODS = 2


@dataclass(frozen=True)
class PrintOptions:
    """The transcoder's `print_options` that change the JSON it prints."""

    preserve_proto_field_names: bool
    always_print_primitive_fields: bool


@dataclass(frozen=True)
class HttpRule:
    """One binding of an rpc to an HTTP method and path."""

    service: str
    method: descriptor_pb2.MethodDescriptorProto
    verb: str
    template: str
    body: str

    @property
    def rpc(self) -> str:
        return f"{self.service}.{self.method.name}"


class Protos:
    """The messages, services and comments of a descriptor set, by full name."""

    def __init__(self, descriptor_set: bytes) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.services: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for file in files:
            self._index_file(file)

    def http_rules(self, services: Sequence[str]) -> Iterator[HttpRule]:
        """Every binding of every rpc of `services`, additional bindings included."""
        for name in services:
            for method in self.services[name].method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    yield _binding(name, method, binding)

    def comment(self, full_name: str) -> str:
        return self.comments.get(full_name, "")

    def _index_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        located = {
            tuple(location.path): _clean(location.leading_comments)
            for location in file.source_code_info.location
            if location.leading_comments
        }
        package = f"{file.package}." if file.package else ""
        for i, message in enumerate(file.message_type):
            self._index_message(f"{package}{message.name}", message, (_FILE_MESSAGES, i), located)
        for enum_type in file.enum_type:
            self.enums[f"{package}{enum_type.name}"] = enum_type
        for i, service in enumerate(file.service):
            name = f"{package}{service.name}"
            self.services[name] = service
            self._note(name, located, (_FILE_SERVICES, i))
            for j, method in enumerate(service.method):
                path = (_FILE_SERVICES, i, _SERVICE_METHODS, j)
                self._note(f"{name}.{method.name}", located, path)

    def _index_message(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        located: Mapping[tuple[int, ...], str],
    ) -> None:
        self.messages[name] = message
        self._note(name, located, path)
        for i, field in enumerate(message.field):
            self._note(f"{name}.{field.name}", located, (*path, _MESSAGE_FIELDS, i))
        for i, nested in enumerate(message.nested_type):
            self._index_message(
                f"{name}.{nested.name}", nested, (*path, _MESSAGE_NESTED, i), located
            )
        for nested_enum in message.enum_type:
            self.enums[f"{name}.{nested_enum.name}"] = nested_enum

    def _note(
        self, name: str, located: Mapping[tuple[int, ...], str], path: tuple[int, ...]
    ) -> None:
        if path in located:
            self.comments[name] = located[path]


def _binding(
    service: str, method: descriptor_pb2.MethodDescriptorProto, rule: http_pb2.HttpRule
) -> HttpRule:
    verb = rule.WhichOneof("pattern")
    if verb is None or verb == "custom":
        raise ValueError(f"{service}.{method.name}: unsupported http rule {rule}")
    if rule.response_body:
        raise ValueError(f"{service}.{method.name}: response_body is not supported")
    return HttpRule(service, method, verb, getattr(rule, verb), rule.body)


def _clean(comment: str) -> str:
    """A proto comment as Markdown: the leading space of each line removed."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.strip("\n").split("\n")]
    return "\n".join(lines).strip()


def _summary(description: str) -> str:
    first = description.split("\n\n")[0].replace("\n", " ")
    sentence = first.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= 120 else sentence[:117] + "…"


def component_name(full_name: str) -> str:
    """`batchplane.api.lookup.v1.BulkLookupBatch` → `lookup.v1.BulkLookupBatch`."""
    return full_name.removeprefix(_COMPONENT_PREFIX)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


class _Builder:
    """Builds one document; collects the message schemas the operations reference."""

    def __init__(
        self,
        protos: Protos,
        options: PrintOptions,
        routes: Mapping[str, Route],
        max_body_bytes: int,
    ) -> None:
        self.protos = protos
        self.options = options
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.schemas: dict[str, Schema] = {}
        self.responses: dict[str, Any] = {}
        self._pending: list[str] = []

    # -- schemas of messages ---------------------------------------------------------------

    def message_ref(self, full_name: str) -> Schema:
        if full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full_name])
        name = component_name(full_name)
        if name not in self.schemas and full_name not in self._pending:
            self._pending.append(full_name)
        return ref(name)

    def finish_messages(self) -> None:
        while self._pending:
            full_name = self._pending.pop()
            self.schemas[component_name(full_name)] = self.message_schema(full_name)

    def message_schema(self, full_name: str, *, without: frozenset[str] = frozenset()) -> Schema:
        message = self.protos.messages[full_name]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.field:
            if field.name in without:
                continue
            key = field.name if self.options.preserve_proto_field_names else field.json_name
            prop = self.field_schema(full_name, field)
            description = self.protos.comment(f"{full_name}.{field.name}")
            if description:
                prop = {**prop, "description": description}
            properties[key] = prop
            if self.options.always_print_primitive_fields and _always_printed(field):
                required.append(key)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        description = self.protos.comment(full_name)
        if description:
            schema["description"] = description
        return schema

    def field_schema(self, message: str, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        entry = self._map_entry(field)
        if entry is not None:
            key_field, value_field = entry.field
            del key_field  # JSON object keys are always strings
            return {"type": "object", "additionalProperties": self._single(message, value_field)}
        single = self._single(message, field)
        if field.label == Field.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def _single(self, message: str, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        type_name = field.type_name.lstrip(".")
        if field.type == Field.TYPE_ENUM:
            values = [value.name for value in self.protos.enums[type_name].value]
            return {"type": "string", "enum": values}
        if field.type in (Field.TYPE_MESSAGE, Field.TYPE_GROUP):
            if type_name == "google.protobuf.Value":
                # A Value prints any JSON; the contract narrows the ones it documents.
                return dict(contract.VALUE_FIELDS.get(f"{message}.{field.name}", {}))
            return self.message_ref(type_name)
        return dict(_SCALARS[field.type])

    def _map_entry(
        self, field: descriptor_pb2.FieldDescriptorProto
    ) -> descriptor_pb2.DescriptorProto | None:
        if field.type != Field.TYPE_MESSAGE or field.label != Field.LABEL_REPEATED:
            return None
        entry = self.protos.messages.get(field.type_name.lstrip("."))
        return entry if entry is not None and entry.options.map_entry else None

    # -- operations ------------------------------------------------------------------------

    def operation(self, rule: HttpRule, operation_id: str) -> dict[str, Any]:
        # An rpc missing from the contract is still documented, plainly: the gateway must
        # start whatever the document lacks (tests/unit/gateway/test_openapi.py insists).
        route = self.routes.get(rule.rpc, _UNKNOWN_ROUTE)
        description = self.protos.comment(rule.rpc)
        operation: dict[str, Any] = {
            "operationId": operation_id,
            "tags": [rule.service.rsplit(".", 1)[-1]],
            "summary": _summary(description) if description else rule.method.name,
            "description": description,
            "x-grpc-method": f"/{rule.service}/{rule.method.name}",
            "security": _security(route.scope),
        }
        if route.scope is not None:
            operation["x-required-scope"] = route.scope
        input_type = rule.method.input_type.lstrip(".")
        path_fields = [match.group(1) for match in _VARIABLE.finditer(rule.template)]
        operation["parameters"] = [
            *(self._path_parameter(input_type, name) for name in path_fields),
            *(self._query_parameters(input_type, path_fields) if not rule.body else []),
            {"$ref": "#/components/parameters/OrganizationId"},
            *([{"$ref": "#/components/parameters/IdempotencyKey"}] if route.idempotent else []),
        ]
        if rule.body:
            operation["requestBody"] = self._request_body(rule, route, input_type, path_fields)
        operation["responses"] = self._responses(rule, route)
        return operation

    def _field(self, message: str, path: str) -> tuple[str, descriptor_pb2.FieldDescriptorProto]:
        """The field at a dotted path, and the message that holds it."""
        *parents, last = path.split(".")
        for name in parents:
            parent = next(f for f in self.protos.messages[message].field if f.name == name)
            message = parent.type_name.lstrip(".")
        return message, next(f for f in self.protos.messages[message].field if f.name == last)

    def _parameter_schema(self, message: str, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        schema = self.field_schema(message, field)
        if field.type in (Field.TYPE_INT64, Field.TYPE_SINT64, Field.TYPE_SFIXED64):
            return {"type": "integer", "format": "int64"}
        return schema

    def _path_parameter(self, message: str, path: str) -> dict[str, Any]:
        holder, field = self._field(message, path)
        return {
            "name": path,
            "in": "path",
            "required": True,
            "description": self.protos.comment(f"{holder}.{field.name}"),
            "schema": self._parameter_schema(holder, field),
        }

    def _query_parameters(self, message: str, path_fields: Sequence[str]) -> list[dict[str, Any]]:
        parameters = []
        for field in self.protos.messages[message].field:
            if field.name in path_fields or field.type in (Field.TYPE_MESSAGE, Field.TYPE_GROUP):
                continue
            parameter: dict[str, Any] = {
                "name": field.name,
                "in": "query",
                "required": False,
                "description": self.protos.comment(f"{message}.{field.name}"),
                "schema": self._parameter_schema(message, field),
            }
            if field.label == Field.LABEL_REPEATED:
                parameter["explode"] = True
            parameters.append(parameter)
        return parameters

    def _request_body(
        self, rule: HttpRule, route: Route, message: str, path_fields: Sequence[str]
    ) -> dict[str, Any]:
        if rule.body == "*":
            # The typed transcoder reads the body into the request message (unknown
            # fields are ignored); path variables are not part of it.
            schema = self.message_schema(message, without=frozenset(path_fields))
            if not schema["properties"]:
                schema = {"type": "object", "description": "Nothing: the path says it all."}
            return {"required": False, "content": {"application/json": {"schema": schema}}}
        holder, field = self._field(message, rule.body)
        if field.type_name.lstrip(".") != HTTP_BODY:
            schema = self.field_schema(holder, field)
        else:
            schema = self._described_body(message, route.request or {}, exclude=rule.body)
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def _described_body(self, message: str, body: Schema, *, exclude: str) -> Schema:
        """A raw JSON body, with descriptions from the request's typed fields of the same
        names (gRPC callers set those instead)."""
        properties = dict(body.get("properties", {}))
        for field in self.protos.messages[message].field:
            comment = self.protos.comment(f"{message}.{field.name}")
            if field.name == exclude or field.name not in properties or not comment:
                continue
            note = properties[field.name].get("description")
            described = f"{comment}\n\n{note}" if note else comment
            properties[field.name] = {**properties[field.name], "description": described}
        return {**body, "properties": properties} if properties else dict(body)

    def _success_schema(self, rule: HttpRule, route: Route) -> Schema:
        output = rule.method.output_type.lstrip(".")
        schema = self.message_ref(output) if output != HTTP_BODY else route.response or {}
        if rule.method.server_streaming:
            # The transcoder prints a server stream as one JSON array of its messages.
            return {"type": "array", "items": schema}
        return schema

    def _responses(self, rule: HttpRule, route: Route) -> dict[str, Any]:
        schema = self._success_schema(rule, route)
        responses: dict[str, Any] = {}
        for status in route.success:
            headers: dict[str, Any] = {
                name: {"$ref": f"#/components/headers/{name.replace('-', '')}"}
                for name in _RATE_LIMIT_HEADERS
            }
            if route.location:
                headers["Location"] = {
                    "required": True,
                    "description": "Where to poll the accepted batch.",
                    "schema": {"type": "string"},
                }
            if route.idempotent:
                headers["Idempotency-Replayed"] = {
                    "$ref": "#/components/headers/IdempotencyReplayed"
                }
            responses[str(status)] = {
                "description": _SUCCESS_MEANINGS.get(status, "Success."),
                "headers": headers,
                "content": {"application/json": {"schema": schema}},
            }
        for status in sorted(self._error_statuses(rule, route)):
            responses[str(status)] = self._error_response(status, route)
        return responses

    def _error_statuses(self, rule: HttpRule, route: Route) -> set[int]:
        statuses = set(contract.COMMON_ERRORS | route.errors)
        if rule.body:
            statuses.add(413)
        if route.idempotent:
            statuses |= {409, 422}
        return statuses

    def _error_response(self, status: int, route: Route) -> dict[str, Any]:
        name = f"{_ERROR_COMPONENTS[route.family]}{status}"
        if name not in self.responses:
            self.responses[name] = self._error_component(status, route.family)
        return {"$ref": f"#/components/responses/{name}"}

    def _error_component(self, status: int, family: ErrorFamily) -> dict[str, Any]:
        schema = ref(_ERROR_COMPONENTS[family])
        if status == 413:
            schema = ref(_ERROR_COMPONENTS[ErrorFamily.DEFAULT])
        elif status in contract.GATEWAY_STATUSES and family is not ErrorFamily.DEFAULT:
            # The gateway's own answers keep the default shape, whatever the family.
            schema = {"anyOf": [schema, ref(_ERROR_COMPONENTS[ErrorFamily.DEFAULT])]}
        meaning = contract.FAMILY_MEANINGS.get((family, status), contract.ERROR_MEANINGS[status])
        if status == 413:
            meaning = f"The body is larger than {self.max_body_bytes} bytes."
        headers: dict[str, Any] = {}
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds until the rate-limit bucket admits a call.",
                "schema": {"type": "string"},
            }
        if status < 500:
            headers["Idempotency-Replayed"] = {"$ref": "#/components/headers/IdempotencyReplayed"}
        response: dict[str, Any] = {
            "description": meaning,
            "content": {"application/json": {"schema": schema}},
        }
        if headers:
            response["headers"] = headers
        return response


_UNKNOWN_ROUTE = Route(scope=None)
_SUCCESS_MEANINGS = {
    200: "Success.",
    201: "Created.",
    202: "Accepted: the work goes on asynchronously.",
    207: "Multi-status: at least one item failed (see each item's `status`).",
}
# Component names of each family's error body (schemas) and answers (responses + status).
_ERROR_COMPONENTS = {
    ErrorFamily.DEFAULT: "Error",
    ErrorFamily.ENRICHMENT: "EnrichmentError",
    ErrorFamily.RADAR: "RadarError",
}
_REPLAYED_HEADER: dict[str, Any] = {
    "description": "Sent when an `Idempotency-Key` was: `true` on a replay of the stored answer.",
    "schema": {"type": "string", "enum": ["true", "false"]},
}
_RATE_LIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Policy": {
        "description": 'The buckets consulted, e.g. `"requests";q=1000;w=60`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of them, e.g. `"requests";r=999;t=0`.',
        "schema": {"type": "string"},
    },
}


def _always_printed(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """Fields without presence: the transcoder prints them even when unset."""
    if field.label == Field.LABEL_REPEATED:
        return True
    if field.type in (Field.TYPE_MESSAGE, Field.TYPE_GROUP):
        return False
    return not field.proto3_optional and not field.HasField("oneof_index")


def _security(scope: str | None) -> list[dict[str, list[str]]]:
    """Either scheme, with the route's scope as its role (OpenAPI 3.1)."""
    roles = [scope] if scope is not None else []
    return [{"bearerAuth": roles}, {"apiKeyAuth": roles}]


def _operation_ids(rules: Sequence[HttpRule]) -> list[str]:
    """The method name, qualified only where two bindings would share it."""
    counts: dict[str, int] = {}
    for rule in rules:
        counts[rule.method.name] = counts.get(rule.method.name, 0) + 1
    ids = []
    seen: dict[str, int] = {}
    for rule in rules:
        name = rule.method.name
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{rule.service.rsplit('.', 1)[-1]}_{name}_{seen[name]}"
        ids.append(name)
    return ids


def build(
    descriptor_set: bytes,
    *,
    services: Sequence[str],
    print_options: PrintOptions,
    max_body_bytes: int,
    max_domains: int,
    plans: Mapping[str, Plan],
    extra_paths: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document of the JSON routes of `services`."""
    protos = Protos(descriptor_set)
    builder = _Builder(
        protos,
        print_options,
        contract.routes(max_domains=max_domains, plans=plans),
        max_body_bytes,
    )
    rules = list(protos.http_rules(services))
    paths: dict[str, dict[str, Any]] = {}
    for rule, operation_id in zip(rules, _operation_ids(rules), strict=True):
        path = _VARIABLE.sub(lambda m: "{" + _plain_variable(m) + "}", rule.template)
        item = paths.setdefault(path, {})
        if rule.verb in item:
            raise ValueError(f"two rpcs bind {rule.verb.upper()} {path}")
        item[rule.verb] = builder.operation(rule, operation_id)
    builder.finish_messages()
    for name, schema in {**contract.components(), **_error_components()}.items():
        if name in builder.schemas:
            raise ValueError(f"schema name {name} is taken by a proto message")
        builder.schemas[name] = schema
    return {
        "openapi": OPENAPI_VERSION,
        "info": _info(),
        "servers": [{"url": "/"}],
        "tags": _tags(protos, services, rules, extra_paths or {}),
        "paths": {**paths, **(extra_paths or {})},
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": dict(sorted(builder.responses.items())),
            "headers": _HEADERS,
            "parameters": _PARAMETERS,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _tags(
    protos: Protos, services: Sequence[str], rules: Sequence[HttpRule], extra: Mapping[str, Any]
) -> list[dict[str, str]]:
    """One tag per service (its comment), then those the extra paths use."""
    tags = [
        {"name": name.rsplit(".", 1)[-1], "description": protos.comment(name)}
        for name in services
        if any(rule.service == name for rule in rules)
    ]
    for item in extra.values():
        for operation in item.values():
            for tag in operation.get("tags", []):
                if all(known["name"] != tag for known in tags):
                    tags.append({"name": tag})
    return tags


def _plain_variable(match: re.Match[str]) -> str:
    binding = match.group(2)
    if binding not in (None, "=*"):
        raise ValueError(f"path template variable {match.group(0)} is not supported")
    return match.group(1)


def _error_components() -> dict[str, Schema]:
    return {_ERROR_COMPONENTS[family]: schema for family, schema in contract.ERROR_SCHEMAS.items()}


def _info() -> dict[str, Any]:
    try:
        version = metadata.version("batchplane")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return {
        "title": "batchplane",
        "version": version,
        "description": (
            "The JSON routes of the batchplane gateway, generated from the protos "
            "(`protos/`) and the HTTP contract (`gateway/contract.py`). Every route also "
            "exists as a gRPC method (`x-grpc-method`) on intake. Each family keeps its "
            "seed's field style and error shape. A token goes in `Authorization: Bearer` "
            "or `X-API-Key`; an operation's role names the scope it needs."
        ),
    }


_HEADERS: dict[str, Any] = {
    "IdempotencyReplayed": _REPLAYED_HEADER,
    **{name.replace("-", ""): header for name, header in _RATE_LIMIT_HEADERS.items()},
}
_PARAMETERS: dict[str, Any] = {
    "OrganizationId": {
        "name": "X-Organization-Id",
        "in": "header",
        "required": False,
        "description": "The organisation to act for, when the token is bound to none "
        "(it must be one of the token's user's).",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Per organisation, for 24 h: the same key and body replay the first "
        "answer (nothing re-executed or re-metered); another body is 422 "
        "`idempotency_key_reuse`; a request still in flight is 409 `idempotency_conflict`.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
}
_SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token."},
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API token.",
    },
}
