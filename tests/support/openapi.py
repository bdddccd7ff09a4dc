"""Reading the OpenAPI document in tests: references, operations, and JSON Schema validators
for its request and response bodies (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_BASE = "urn:batchplane:openapi"


def pointer(*parts: str) -> str:
    """A JSON pointer to `parts` (RFC 6901 escaping)."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def resolve(document: dict[str, Any], value: Any) -> Any:
    """`value`, or what its local `$ref` points at (followed until none is left)."""
    while isinstance(value, dict) and "$ref" in value and len(value) == 1:
        target: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        value = target
    return value


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])


def operations(document: dict[str, Any]) -> Iterator[Operation]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield Operation(path, method, item[method])


class Schemas:
    """JSON Schema validators for parts of one document, `$ref`s resolved within it."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            _BASE, DRAFT202012.create_resource(document)
        )

    def at(self, location: str) -> Draft202012Validator:
        """A validator for the schema at a JSON pointer into the document."""
        return Draft202012Validator(
            {"$ref": f"{_BASE}#{location}"},
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def request(self, operation: Operation) -> Draft202012Validator:
        return self.at(
            pointer(
                "paths",
                operation.path,
                operation.method,
                "requestBody",
                "content",
                "application/json",
                "schema",
            )
        )

    def response(self, operation: Operation, status: int) -> Draft202012Validator:
        """The schema of the documented response for `status` (a `$ref` to a shared
        response is followed)."""
        response = operation.spec["responses"][str(status)]
        if "$ref" in response:
            return self.at(
                response["$ref"].removeprefix("#")
                + pointer("content", "application/json", "schema")
            )
        return self.at(
            pointer(
                "paths",
                operation.path,
                operation.method,
                "responses",
                str(status),
                "content",
                "application/json",
                "schema",
            )
        )
