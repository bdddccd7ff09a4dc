"""Radar configurations (seed 003): validation, with one error per failing field, and
the identity that makes two radars "the same configuration" (409).

Shared by single create (intake) and bulk items (processor): one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from batchplane.lookup.domains import InvalidDomain, normalise_domain

COMPANY = "company"
CONTACT = "contact"
INDUSTRY = "industry"

# Supported radar_type values per radar kind (documented in the README).
RADAR_TYPES: dict[str, tuple[str, ...]] = {
    COMPANY: ("technology_changes", "website_changes"),
    CONTACT: ("profile_changes",),
    INDUSTRY: ("industry_mentions", "industry_job_openings", "industry_news"),
}
KEYWORD_TYPES = frozenset({"industry_mentions", "industry_job_openings"})
_FIELDS: dict[str, frozenset[str]] = {
    COMPANY: frozenset({"domain", "radar_type", "filters"}),
    CONTACT: frozenset({"profile_url", "radar_type", "domain"}),
    INDUSTRY: frozenset({"radar_type", "keyword"}),
}


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RadarInvalid(Exception):
    """400: the body names every failing field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class RadarSpec:
    """A validated radar configuration."""

    kind: str
    radar_type: str
    domain: str | None = None
    profile_url: str | None = None
    keyword: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """Equal for two radars with the same configuration (filters aside)."""
        if self.kind == COMPANY:
            return f"{COMPANY}|{self.radar_type}|{self.domain}"
        if self.kind == CONTACT:
            return f"{CONTACT}|{self.radar_type}|{self.profile_url}|{self.domain}"
        if self.radar_type in KEYWORD_TYPES:
            return f"{INDUSTRY}|{self.radar_type}|{(self.keyword or '').casefold()}"
        return f"{INDUSTRY}|{self.radar_type}"

    @property
    def conflict_field(self) -> str:
        """The field a 409 names, per seed 003."""
        if self.kind == COMPANY:
            return "domain"
        if self.kind == CONTACT:
            return "identifiers"
        return "keyword" if self.radar_type in KEYWORD_TYPES else "radar_type"


KIND_OF_TYPE = {t: kind for kind, types in RADAR_TYPES.items() for t in types}


def kind_of_item(body: Any) -> str | None:
    """A bulk item's kind, from its `radar_type` (each type belongs to one kind)."""
    radar_type = body.get("radar_type") if isinstance(body, dict) else None
    return KIND_OF_TYPE.get(radar_type) if isinstance(radar_type, str) else None


def parse_radar(kind: str, body: Any, *, extra_suffixes: frozenset[str] = frozenset()) -> RadarSpec:
    """Validate a single-create body (or a bulk item without `custom_fields`)."""
    if not isinstance(body, dict):
        raise RadarInvalid([FieldError("body", "must be a JSON object")])
    errors = [
        FieldError(name, "is not a known field") for name in sorted(set(body) - _FIELDS[kind])
    ]
    radar_type = body.get("radar_type")
    if radar_type not in RADAR_TYPES[kind]:
        errors.append(FieldError("radar_type", f"must be one of {', '.join(RADAR_TYPES[kind])}"))
    values: dict[str, Any] = {}
    if kind in (COMPANY, CONTACT):
        values["domain"] = _domain(body.get("domain"), errors, extra_suffixes)
    if kind == CONTACT:
        values["profile_url"] = _profile_url(body.get("profile_url"), errors)
    if kind == INDUSTRY:
        values["keyword"] = _keyword(body.get("keyword"), radar_type, errors)
    if kind == COMPANY:
        values["filters"] = _filters(body.get("filters"), errors)
    if errors:
        raise RadarInvalid(errors)
    return RadarSpec(kind=kind, radar_type=str(radar_type), **values)


def _domain(value: Any, errors: list[FieldError], extra_suffixes: frozenset[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError("domain", "is required"))
        return None
    try:
        return normalise_domain(value, extra_suffixes=extra_suffixes)
    except InvalidDomain as error:
        errors.append(FieldError("domain", f"is not a valid domain: {error.reason}"))
        return None


def _profile_url(value: Any, errors: list[FieldError]) -> str | None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(FieldError("profile_url", "must be an http or https URL"))
        return None
    return value.strip().rstrip("/") if isinstance(value, str) else None


def _keyword(value: Any, radar_type: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        if radar_type in KEYWORD_TYPES:
            errors.append(FieldError("keyword", f"is required for {radar_type}"))
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        errors.append(FieldError("keyword", "must be a non-empty string of at most 200 characters"))
        return None
    return value.strip()


def _filters(value: Any, errors: list[FieldError]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("filters", "must be an object"))
        return {}
    return value
