"""Enrichment tasks as clients send them (seed 002): validation and entity references.

`entityId` is an entity's UUID, or, to name an entity the platform has not seen
yet, a domain (a company) or a profile URL (a person).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from batchplane.core.errors import InvalidRequest
from batchplane.core.json_body import parse_object
from batchplane.lookup.domains import InvalidDomain, normalise_domain

FIELDS = ("emails", "phones", "summary", "technologies", "socials", "address")
COMPANY = "company"
PERSON = "person"
ENTITY_TYPES = (COMPANY, PERSON)
MAX_TASKS = 200
_TASK_KEYS = frozenset({"entityId", "field", "entityType"})


def validation_error(message: str) -> InvalidRequest:
    """Seed 002 answers every bad request with 400 VALIDATION_ERROR."""
    return InvalidRequest(message, code="validation_error", http_status=400)


@dataclass(frozen=True)
class EntityRef:
    """Either a known entity's UUID, or a (type, key) naming one to register."""

    entity_id: str | None
    type: str | None
    key: str | None


@dataclass(frozen=True)
class Task:
    ref: EntityRef
    field: str


@dataclass(frozen=True)
class TaskBatch:
    tasks: list[Task]
    webhook_url: str | None


def parse_task_batch(
    raw: bytes, *, cap: int, extra_suffixes: frozenset[str], trigger: bool
) -> TaskBatch:
    """`{"tasks": [...]}` (and `webhook_url` on the trigger), strictly."""
    try:
        body = parse_object(raw)
    except InvalidRequest as error:
        raise validation_error(error.message) from None
    allowed = {"tasks", "webhook_url"} if trigger else {"tasks"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise validation_error(f"unknown field: {unknown[0]}")
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise validation_error("tasks must be a non-empty array")
    if len(tasks) > MAX_TASKS:
        raise validation_error(f"tasks must have at most {MAX_TASKS} entries, got {len(tasks)}")
    if len(tasks) > cap:
        raise InvalidRequest(
            f"tasks must have at most {cap} entries on this plan, got {len(tasks)}",
            code="batch_too_large",
            extra={"max_batch_size": cap},
        )
    webhook = body.get("webhook_url")  # checked by the route's WebhookUrlPolicy
    return TaskBatch([_task(t, i, extra_suffixes) for i, t in enumerate(tasks)], webhook)


def _task(value: Any, index: int, extra_suffixes: frozenset[str]) -> Task:
    where = f"tasks[{index}]"
    if not isinstance(value, dict):
        raise validation_error(f"{where} must be an object")
    unknown = sorted(set(value) - _TASK_KEYS)
    if unknown:
        raise validation_error(f"unknown field: {where}.{unknown[0]}")
    entity = value.get("entityId")
    if not isinstance(entity, str) or not entity.strip():
        raise validation_error(f"{where}.entityId must be a non-empty string")
    field = value.get("field")
    if field not in FIELDS:
        raise validation_error(f"{where}.field must be one of {', '.join(FIELDS)}")
    entity_type = value.get("entityType")
    if entity_type is not None and entity_type not in ENTITY_TYPES:
        raise validation_error(f"{where}.entityType must be company or person")
    try:
        ref = entity_ref(entity.strip(), entity_type, extra_suffixes)
    except ValueError as error:
        raise validation_error(f"{where}.entityId {error}") from None
    return Task(ref, str(field))


def entity_ref(value: str, entity_type: str | None, extra_suffixes: frozenset[str]) -> EntityRef:
    """How `entityId` names its entity; raises ValueError when it names none."""
    if _is_uuid(value):
        return EntityRef(value.lower(), entity_type, None)
    looks_like_profile = value.lower().startswith(("http://", "https://")) and urlsplit(
        value
    ).path.strip("/")
    kind = entity_type or (PERSON if looks_like_profile else COMPANY)
    if kind == PERSON:
        return EntityRef(None, PERSON, profile_key(value))
    try:
        return EntityRef(None, COMPANY, normalise_domain(value, extra_suffixes=extra_suffixes))
    except InvalidDomain as error:
        raise ValueError(f"is neither a UUID nor a domain: {error.reason}") from None


def profile_key(url: str) -> str:
    """A person's profile URL, normalised: http(s) only, lower-case host, no fragment."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be a UUID or an http(s) profile URL for a person")
    host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36
