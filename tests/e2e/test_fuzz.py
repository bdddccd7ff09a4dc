"""Fuzzing every JSON route of the served OpenAPI document through Envoy.

For each operation hypothesis draws path and query parameters, and bodies: from the
documented request schema (`_from_schema`, a small generator of the
JSON Schema keywords the document uses), any JSON value at all, documented
bodies with an unknown field added, and bytes that are not JSON. Whatever it sends, the
answer is never a 5xx, its status is one the document lists for the operation, and a
4xx body is valid against the documented schema for that status. A body over the
gateway's limit is 413 before intake sees it.

Bounded: `EXAMPLES` calls per operation, on a stack of its own (random valid batches
make its processor fetch random names)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.openapi import Operation, Schemas, operations, resolve
from tests.support.stack import OwnStack, RunningStack

from batchplane.core.settings import Settings
from batchplane.gateway import config

EXAMPLES = 40
SKIPPED = {"/healthz", "/openapi.json"}
DOCUMENT = config.openapi_document(Settings())
OPERATIONS = [op for op in operations(DOCUMENT) if op.path not in SKIPPED]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzzed(own_stack: OwnStack) -> AsyncIterator[tuple[RunningStack, str, dict[str, Any]]]:
    async with own_stack() as stack:
        org = stack.cli(
            "admin", "create-org", "--name", "fz", "--plan", "enterprise", "--credits", "1000000"
        )
        served = json.loads(_call(stack.base_url, "GET", "/openapi.json", None, None, None)[1])
        yield stack, org["token"], served


def _inline(document: dict[str, Any], schema: Any, depth: int = 0) -> Any:
    """The schema with local `$ref`s replaced by their targets (recursion cut at depth 5)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return (
                {}
                if depth > 5
                else _inline(document, resolve(document, {"$ref": schema["$ref"]}), depth + 1)
            )
        return {k: _inline(document, v, depth) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(document, v, depth) for v in schema]
    return schema


def _from_schema(schema: Any) -> st.SearchStrategy[Any]:
    """Values shaped by `schema`: types, properties, enums, ranges; anything else is free."""
    if not isinstance(schema, dict) or not schema:
        return JSON_VALUES
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([_from_schema(s) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_from_schema({**schema, "type": k}) for k in kind])
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: _from_schema(v) for k, v in properties.items() if k in required},
            optional={k: _from_schema(v) for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            _from_schema(schema.get("items", {})),
            min_size=min(schema.get("minItems", 0), 5),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**33)), schema.get("maximum", 2**33))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.one_of(
            st.text(max_size=schema.get("maxLength", 30)),
            st.sampled_from(["plain.test", "https://acme.test/", "http://blog.test/", "emails"]),
        )
    return JSON_VALUES


def _bodies(op: Operation) -> st.SearchStrategy[Any]:
    content = op.spec.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return st.none()
    schema = _inline(DOCUMENT, content["schema"])
    documented = _from_schema(schema)
    with_unknown = st.tuples(documented, st.text(min_size=1, max_size=8), JSON_VALUES).map(
        lambda t: {**t[0], f"x_{t[1]}": t[2]} if isinstance(t[0], dict) else t[0]
    )
    not_json = st.binary(max_size=40).map(lambda b: _Raw(b"{" + b))
    return st.one_of(documented, JSON_VALUES, with_unknown, not_json)


class _Raw(bytes):
    """A body sent as these bytes, not encoded as JSON."""


def _params(op: Operation, where: str) -> list[str]:
    return [
        p["name"] for p in op.spec.get("parameters", []) if resolve(DOCUMENT, p).get("in") == where
    ]


PARAM_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=2**40).map(str),
    st.text(max_size=24),
    st.sampled_from(["batch_1", "job_1_0", "radar_1", "bulk_1", "msg_1", "0", "-1", "1e9"]),
)


def _call(
    base: str, method: str, path: str, body: Any, token: str | None, query: dict[str, str] | None
) -> tuple[int, bytes]:
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        data = bytes(body) if isinstance(body, _Raw) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _check(schemas: Schemas, op: Operation, status: int, raw: bytes, sent: Any) -> None:
    what = f"{op.method.upper()} {op.path} with {sent!r:.200} answered {status} {raw[:300]!r}"
    assert status < 500, what
    assert str(status) in op.spec["responses"], what
    if 400 <= status < 500:
        body = json.loads(raw)
        errors = sorted(e.message for e in schemas.response(op, status).iter_errors(body))
        assert not errors, f"{what}: {errors}"


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op.method}-{op.path}")
def test_no_input_makes_a_route_fail_or_answer_undocumented(
    op: Operation, fuzzed: tuple[RunningStack, str, dict[str, Any]]
) -> None:
    stack, token, served = fuzzed
    schemas = Schemas(served)
    path_params, query_params = _params(op, "path"), _params(op, "query")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        body=_bodies(op) if op.method == "post" else st.none(),
        path=st.fixed_dictionaries(dict.fromkeys(path_params, PARAM_VALUES)),
        query=st.fixed_dictionaries({}, optional=dict.fromkeys(query_params, PARAM_VALUES)),
    )
    def one_call(body: Any, path: dict[str, str], query: dict[str, str]) -> None:
        url_path = op.path
        for name, value in path.items():
            url_path = url_path.replace("{" + name + "}", urllib.parse.quote(value, safe="") or "x")
        status, raw = _call(stack.base_url, op.method.upper(), url_path, body, token, query)
        _check(schemas, op, status, raw, (url_path, query, body))

    one_call()


def test_an_oversized_body_is_413_at_the_gateway(
    fuzzed: tuple[RunningStack, str, dict[str, Any]],
) -> None:
    stack, token, _ = fuzzed
    limit = Settings().gateway_max_body_bytes
    for op in OPERATIONS:
        if op.method != "post":
            continue
        path = op.path.replace("{", "").replace("}", "")
        status, raw = _call(stack.base_url, "POST", path, _Raw(b"x" * (limit + 1)), token, None)
        assert status == 413, (op.path, status, raw[:200])
        assert json.loads(raw)["code"] == "payload_too_large"


def test_a_nul_byte_is_refused_never_a_500(
    fuzzed: tuple[RunningStack, str, dict[str, Any]],
) -> None:
    """PostgreSQL refuses NUL in text: found by the fuzzing above (GET
    /api/v1/operations/enrichment/%00 and /v1/radars/%00 answered 500)."""
    stack, token, served = fuzzed
    schemas = Schemas(served)
    for op in OPERATIONS:
        if "{" not in op.path:
            continue
        path = op.path
        for name in _params(op, "path"):
            path = path.replace("{" + name + "}", "a%00b")
        body = {} if op.method == "post" else None
        status, raw = _call(stack.base_url, op.method.upper(), path, body, token, None)
        assert status == 400, (op.path, status, raw)
        _check(schemas, op, status, raw, path)
    nul = "a\u0000b"
    for op, body in (
        ("/api/v1/bulk/lookup", {"domains": [nul], "webhook_url": f"https://{nul}.test/"}),
        ("/v1/radars/company", {"domain": nul, "radar_type": "technology_changes"}),
        ("/v1/radars/bulk", {"webhook_url": "https://hooks.test/", "radars": [
            {"domain": "acme.test", "radar_type": "website_changes", "custom_fields": {"k": nul}}]}),
        ("/v1/scrape/batch", {"urls": [f"http://{nul}/"], "schema": {"type": "object", "title": nul}}),
        ("/api/v1/operations/enrichment/batch", {"tasks": [{"entityId": nul, "field": "emails"}]}),
    ):  # fmt: skip
        status, raw = _call(stack.base_url, "POST", op, body, token, None)
        assert status < 500, (op, status, raw)
