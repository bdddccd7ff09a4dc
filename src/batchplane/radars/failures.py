"""The failure bodies of radar creation: what single create answers and what a bulk
item's `radar_failure` spreads into its envelope. One definition for both."""

from __future__ import annotations

from typing import Any

from batchplane.radars.specs import FieldError

VALIDATION = "Validation error"
CONFLICT = "Radar already exists"
UNPAID = "Insufficient balance"
INTERNAL = "Internal server error"


def failure_body(
    status: int,
    message: str,
    errors: list[FieldError] | None = None,
    conflicting_radar_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [e.as_json() for e in errors or []],
    }
    if conflicting_radar_id is not None:
        body["conflicting_radar_id"] = conflicting_radar_id
    return body
