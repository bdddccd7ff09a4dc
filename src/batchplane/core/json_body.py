"""Strict reading of JSON request bodies.

The gateway hands intake the raw body (google.api.HttpBody) because Envoy's
typed transcoder silently drops unknown fields and coerces `"x"` into `["x"]`.
Everything here raises `InvalidRequest`: 400 for a body that is not a JSON
object, 422 for a well-formed body with unacceptable fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchplane.core.errors import InvalidRequest

INT32_MAX = 2**31 - 1


def parse_object(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object, or raise 400."""
    if not raw.strip():
        raise InvalidRequest(
            "request body must be a JSON object", code="malformed_json", http_status=400
        )
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"request body is not valid JSON: {exc.args[0] if exc.args else exc}",
            code="malformed_json",
            http_status=400,
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest(
            "request body must be a JSON object", code="malformed_json", http_status=400
        )
    if _has_nul(value):
        # PostgreSQL stores no NUL in text or jsonb: refuse it here, not with a 500 later.
        raise InvalidRequest("strings must not contain the NUL character (\\u0000)")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def reject_unknown(body: Mapping[str, Any], allowed: frozenset[str], *, where: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field: {where}{unknown[0]}", code="unknown_field")


def optional_bool(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean")
    return value


def optional_int(body: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be between {minimum} and {maximum}")
    return value


def string_array(body: Mapping[str, Any], name: str, *, max_items: int) -> list[str]:
    """A required non-empty array of strings with at most `max_items` entries."""
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{name} must be a non-empty array")
    if len(value) > max_items:
        raise InvalidRequest(
            f"{name} must have at most {max_items} elements, got {len(value)}",
            code="batch_too_large",
            extra={"max_batch_size": max_items},
        )
    for index, entry in enumerate(value):
        if not isinstance(entry, str):
            raise InvalidRequest(f"{name}[{index}] must be a string")
    return value
