"""What a synchronous item handler returns, and the shared reading of item fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from batchplane.lookup.domains import InvalidDomain, normalise_domain


@dataclass(frozen=True)
class Answer:
    """One item's answer: 200 with data, or an error status with a code."""

    status: int
    data: dict[str, Any] | None = None
    code: str = ""
    message: str = ""


class BadItem(Exception):
    """The item is not shaped as the endpoint expects (answered 400 invalid_item)."""


def ok(data: dict[str, Any]) -> Answer:
    return Answer(200, data)


def not_found(message: str) -> Answer:
    return Answer(404, code="not_found", message=message)


def invalid(message: str) -> Answer:
    return Answer(400, code="invalid_item", message=message)


class SyncFamily(Protocol):
    """Answers the items of one synchronous endpoint from stored data."""

    family: str

    async def answer(self, org_id: str, item: Mapping[str, Any]) -> Answer:
        """Answer one item; raise BadItem for a malformed one."""
        ...


def only_fields(item: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise BadItem(f"unknown field: {unknown[0]}")


def required_string(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadItem(f"{name} must be a non-empty string")
    return value.strip()


def domain_field(item: Mapping[str, Any], extra_suffixes: frozenset[str]) -> str:
    raw = required_string(item, "domain")
    try:
        return normalise_domain(raw, extra_suffixes=extra_suffixes)
    except InvalidDomain as error:
        raise BadItem(f"domain is not a valid domain name: {error.reason}") from None


def optional_timestamp(item: Mapping[str, Any], name: str) -> datetime | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadItem(f"{name} must be an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadItem(f"{name} must be an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise BadItem(f"{name} must carry a time zone offset")
    return moment
