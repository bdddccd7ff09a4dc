"""Strict reading of the bulk lookup body and planning of its items."""

from __future__ import annotations

import pytest

from batchplane.core.errors import InvalidRequest
from batchplane.core.settings import LookupSettings
from batchplane.intake.lookups import parse_lookup_json, plan_items

SETTINGS = LookupSettings()


def test_seed_body_is_read_with_defaults_filled() -> None:
    request = parse_lookup_json(b'{"domains":["example.com","https://foo.bar/"]}', SETTINGS)

    assert request.domains == ["example.com", "https://foo.bar/"]
    assert request.recompute is False
    assert request.max_age_ms == SETTINGS.default_max_age_ms
    assert request.list_id is None


def test_all_fields_are_read() -> None:
    raw = b'{"domains":["a.com"],"recompute":true,"max_age":5,"list_id":42}'
    request = parse_lookup_json(raw, SETTINGS)
    assert (request.recompute, request.max_age_ms, request.list_id) == (True, 5, 42)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "malformed_json"),
        (b"{", 400, "malformed_json"),
        (b"[]", 400, "malformed_json"),
        (b'"x"', 400, "malformed_json"),
        (b'{"domains":"x"}', 422, "invalid_request"),
        (b'{"domains":[null]}', 422, "invalid_request"),
        (b'{"domains":["a.com"],"other":1}', 422, "unknown_field"),
        (b'{"domains":["a.com"],"max_age":true}', 422, "invalid_request"),
        (b'{"domains":["a.com"],"list_id":0}', 422, "invalid_request"),
        (b'{"domains":["a.com"],"list_id":2147483648}', 422, "invalid_request"),
        (b'{"domains":[' + b",".join([b'"a.com"'] * 101) + b"]}", 422, "batch_too_large"),
    ],
)
def test_bad_bodies_are_rejected(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_lookup_json(raw, SETTINGS)
    assert caught.value.http_status == status
    assert caught.value.code == code


def test_plan_normalises_deduplicates_and_keeps_invalid_entries_as_items() -> None:
    planned = plan_items(
        ["HTTPS://Foo.bar/x", "foo.bar", " not a domain ", "not a domain", "www.foo.bar"],
        frozenset(),
    )

    assert planned.inputs == ["foo.bar", "not a domain", "www.foo.bar"]
    assert planned.valid_domains == ["foo.bar", "www.foo.bar"]
