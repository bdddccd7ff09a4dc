"""The OpenAPI document served at /openapi.json is true: every documented operation is
called through Envoy, and each answer's status is one the document lists for it, with a
body valid against the documented schema for that status (and the documented required
headers). Request bodies are checked against the documented request schema too: the
bodies intake accepts must be valid, and those it refuses as malformed must not be."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest_asyncio
from tests.support.api import bearer, get_json, poll_lookup
from tests.support.openapi import Operation, Schemas, operations, resolve
from tests.support.receiver import Receiver, serve_receiver
from tests.support.stack import RunningStack

from batchplane.core.settings import Settings
from batchplane.gateway import config

State = dict[str, Any]
Value = str | int | Callable[[State], Any]
INFER = "infer"
LIST_ID = 7
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name"],
}


@dataclass
class Case:
    """One call of an operation, and the status it must answer."""

    operation: str
    expect: int
    path: Mapping[str, Value] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    raw: bytes | None = None
    token: str = "owner"
    headers: Mapping[str, str] = field(default_factory=dict)
    # Whether the documented request schema accepts `body`: by default, when the
    # answer is not a 400/422 refusal of it.
    schema_accepts: bool | str | None = INFER
    keep: Callable[[State, Any], None] | None = None

    def label(self) -> str:
        shown = self.body if self.body is not None else self.raw
        return f"{self.operation} → {self.expect} ({self.token}, {shown!r:.60})"


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as served:
        yield served


def _tokens(stack: RunningStack) -> dict[str, str | None]:
    def org(credits: int, plan: str = "pro") -> dict[str, Any]:
        return stack.cli(
            "admin", "create-org", "--name", "oa", "--plan", plan, "--credits", str(credits)
        )

    owner = org(1000)

    def token(*args: str) -> str:
        return str(stack.cli("admin", "create-token", "--org", owner["org_id"], *args)["token"])

    return {
        "owner": owner["token"],
        "broke": org(0)["token"],
        "tiny": org(1000, plan="tiny")["token"],
        "unbound": token("--unbound"),
        # Tokens lacking a route's scope: one with signals.read alone, one for signals.
        "only-signals": token("--scopes", "signals.read"),
        "only-lookup": token("--scopes", "lookup.write"),
        "none": None,
    }


def _kept(key: str, pick: Callable[[Any], Any]) -> Callable[[State, Any], None]:
    def keep(state: State, body: Any) -> None:
        state[key] = pick(body)

    return keep


def _state(key: str) -> Callable[[State], Any]:
    return lambda state: state[key]


def _writes(receiver: Receiver) -> list[Case]:
    """Calls that create what the reads then look at, and refusals of bad bodies."""
    hook = receiver.url(f"openapi-{uuid.uuid4().hex[:8]}")
    company = {"domain": "acme.test", "radar_type": "technology_changes"}
    key = uuid.uuid4().hex
    return [
        Case("CreateBulkLookup", 202, body={"domains": ["plain.test"], "list_id": LIST_ID},
             keep=_kept("lookup_id", lambda b: b["id"])),
        Case("CreateBulkLookup", 202, body={"domains": ["not a domain"]},
             keep=_kept("failed_lookup_id", lambda b: b["id"])),
        Case("CreateBulkLookup", 422, body={"domains": []}),
        Case("CreateBulkLookup", 422, body={"domains": ["plain.test"], "colour": "red"}),
        Case("CreateBulkLookup", 422, body={"domains": "plain.test"}),
        Case("CreateBulkLookup", 400, raw=b'{"domains": ['),
        Case("CreateBulkLookup", 402, body={"domains": ["plain.test"]}, token="broke"),
        Case("CreateBulkLookup", 429, body={"domains": [f"q{i}.test" for i in range(6)]},
             token="tiny"),
        Case("CreateBulkLookup", 202, body={"domains": ["wp.test"]},
             headers={"Idempotency-Key": key}),
        Case("CreateBulkLookup", 202, body={"domains": ["wp.test"]},
             headers={"Idempotency-Key": key}),
        Case("CreateBulkLookup", 422, body={"domains": ["plain.test"]},
             headers={"Idempotency-Key": key}, schema_accepts=True),
        Case("IntelligenceBatch", 422, body={"requests": []}),
        Case("IntelligenceBatch", 422, body={"requests": [{"domain": "a.test"}], "x": 1}),
        Case("SignalsBatch", 400, raw=b"[1, 2"),
        Case("EnrichmentBatch", 207, body={"requests": [{"entity_id": "nobody", "field": "emails"}]}),
        Case("TriggerEnrichments", 202, body={"tasks": [{"entityId": "acme.test", "field": "emails"}]},
             keep=_kept("enrichment_id", lambda b: b[0]["id"])),
        Case("TriggerEnrichments", 400, body={"tasks": []}),
        Case("TriggerEnrichments", 400, body={"tasks": [{"entityId": "acme.test", "field": "mood"}]}),
        Case("TriggerEnrichments", 402, body={"tasks": [{"entityId": "acme.test", "field": "phones"}]},
             token="broke"),
        Case("QueryEnrichments", 400, raw=b"nope"),
        Case("CreateScrapeBatch", 200, body={"urls": ["http://shop.test/"], "schema": SCHEMA},
             keep=lambda s, b: s.update(scrape_id=b["batch_id"], job_id=b["jobs"][0]["job_id"])),
        Case("CreateScrapeBatch", 422, body={"urls": [], "schema": SCHEMA}),
        Case("CreateScrapeBatch", 422, body={"urls": ["http://shop.test/"], "schema": SCHEMA,
                                             "options": {"parallel_jobs": 99}}),
        Case("CreateScrapeBatch", 402, body={"urls": ["http://shop.test/"], "schema": SCHEMA},
             token="broke"),
        Case("CreateCompanyRadar", 201, body=company, keep=_kept("radar_id", lambda b: b["id"])),
        Case("CreateCompanyRadar", 409, body=company),
        Case("CreateCompanyRadar", 400, body={"domain": "acme.test"}),
        Case("CreateCompanyRadar", 402, body=company, token="broke"),
        Case("CreateCompanyRadar", 413, raw=b'{"domain": "' + b"a" * 1_100_000 + b'"}'),
        Case("CreateContactRadar", 201, body={"profile_url": "http://people.test/ann",
                                              "radar_type": "profile_changes", "domain": "acme.test"}),
        Case("CreateContactRadar", 400, body={"radar_type": "profile_changes"}),
        Case("CreateIndustryRadar", 201, body={"radar_type": "industry_news"}),
        Case("CreateIndustryRadar", 400, body={"radar_type": "industry_mentions"}),
        # The second item conflicts with the radar above: one radar_created, one radar_failure.
        Case("CreateBulkRadars", 202, body={"webhook_url": hook, "radars": [
                 {"domain": "wp.test", "radar_type": "website_changes", "custom_fields": {"crm": 1}},
                 company]},
             keep=_kept("bulk_id", lambda b: b["bulk_id"])),
        Case("CreateBulkRadars", 400, body={"webhook_url": hook, "radars": []}),
        Case("CreateBulkRadars", 400, body={"radars": [company]}),
    ]  # fmt: skip


def _reads() -> list[Case]:
    """Calls made once the asynchronous work above has ended."""
    return [
        Case("GetBulkLookup", 200, path={"id": _state("lookup_id")}),
        Case("GetBulkLookup", 404, path={"id": 2_000_000_000}),
        Case("GetBulkLookup", 400, path={"id": "abc"}),
        Case("GetList", 200, path={"list_id": LIST_ID}),
        Case("GetList", 404, path={"list_id": LIST_ID + 1}),
        Case("IntelligenceBatch", 200, body={"requests": [{"domain": "plain.test"}]}),
        Case("IntelligenceBatch", 207, body={"requests": [{"domain": "plain.test"}, 1]},
             schema_accepts=False),
        Case("SignalsBatch", 200, body={"requests": [{"domain": "plain.test",
                                                      "types": ["technology_added"]}]}),
        Case("EnrichmentBatch", 207, body={"requests": [{"entity_id": "x", "field": "emails"}]}),
        Case("GetUsage", 200),
        Case("QueryEnrichments", 200, body={"tasks": [{"entityId": "acme.test", "field": "emails"}]}),
        Case("GetEnrichment", 200, path={"id": _state("enrichment_id")}),
        Case("GetEnrichment", 404, path={"id": str(uuid.uuid4())}),
        Case("GetEnrichment", 400, path={"id": _state("enrichment_id")}, query={"x": "1"}),
        Case("GetScrapeBatch", 200, path={"batch_id": _state("scrape_id")}),
        Case("GetScrapeBatch", 404, path={"batch_id": "batch_0"}),
        Case("GetScrapeJob", 200, path={"job_id": _state("job_id")}),
        Case("GetScrapeJob", 404, path={"job_id": "job_x"}),
        Case("ListDeliveries", 200, keep=_kept("delivery_id", lambda b: b["deliveries"][0]["id"])),
        Case("ListDeliveries", 400, query={"limit": "many"}),
        Case("RedeliverDelivery", 202, path={"delivery_id": _state("delivery_id")}, body={}),
        Case("RedeliverDelivery", 404, path={"delivery_id": "msg_nope"}, body={}),
        Case("GetRadar", 200, path={"id": _state("radar_id")}),
        Case("GetRadar", 404, path={"id": "radar_nope"}),
        Case("ListRadars", 200, query={"limit": "2"}),
        Case("ListRadars", 400, query={"limit": "two"}),
        Case("GetBulkRadars", 200, path={"bulk_id": _state("bulk_id")}),
        Case("GetBulkRadars", 404, path={"bulk_id": "bulk_0"}),
        Case("DeactivateRadar", 200, path={"id": _state("radar_id")}, body={}),
        Case("DeactivateRadar", 404, path={"id": "radar_nope"}, body={}),
        Case("GetBatch", 200, path={"batch_id": _state("lookup_id")}),
        Case("GetBatch", 404, path={"batch_id": 2_000_000_000}),
        Case("CancelBatch", 409, path={"batch_id": _state("lookup_id")}, body={}),
        # slow.test answers after 12 s: this batch is still running when cancelled.
        Case("CreateBulkLookup", 202, body={"domains": ["slow.test"]},
             keep=_kept("slow_lookup_id", lambda b: b["id"])),
        Case("CancelBatch", 200, path={"batch_id": _state("slow_lookup_id")}, body={}),
        Case("CancelBatch", 404, path={"batch_id": 2_000_000_000}, body={}),
        Case("RetryFailedItems", 201, path={"batch_id": _state("failed_lookup_id")}, body={}),
        Case("RetryFailedItems", 409, path={"batch_id": _state("lookup_id")}, body={}),
        Case("Healthz", 200, token="none"),
        Case("OpenApi", 200, token="none"),
    ]  # fmt: skip


def _admission(operation: Operation) -> list[Case]:
    """What every operation answers before reading anything: no token (401), a token
    bound to no organisation and none named (400), a token without the scope (403)."""
    if operation.spec.get("security") == []:
        return []
    path = {
        p["name"]: 1 if p["schema"].get("type") == "integer" else "x"
        for p in operation.spec["parameters"]
        if p.get("in") == "path"
    }
    body = {} if "requestBody" in operation.spec else None
    cases = [
        Case(operation.id, 401, path=path, body=body, token="none", schema_accepts=None),
        Case(operation.id, 400, path=path, body=body, token="unbound", schema_accepts=None),
    ]
    scope = operation.spec.get("x-required-scope")
    if scope is not None:
        lacking = "only-lookup" if scope == "signals.read" else "only-signals"
        cases.append(Case(operation.id, 403, path=path, body=body, token=lacking,
                          schema_accepts=None))  # fmt: skip
    return cases


class Checker:
    """Sends cases and records every way an answer differs from the document."""

    def __init__(
        self, stack: RunningStack, http: aiohttp.ClientSession, document: dict[str, Any]
    ) -> None:
        self.stack = stack
        self.http = http
        self.document = document
        self.schemas = Schemas(document)
        self.by_id = {operation.id: operation for operation in operations(document)}
        self.tokens: dict[str, str | None] = {}
        self.state: State = {}
        self.problems: list[str] = []
        self.answered: dict[str, set[int]] = {}

    async def run(self, case: Case) -> Any:
        operation = self.by_id.get(case.operation)
        if operation is None:
            # A route this build does not serve; the coverage check below catches the
            # opposite (a served route without cases).
            return None
        try:
            url = self._url(operation, case)
        except KeyError as missing:
            self.problems.append(f"{case.label()}: no {missing} from an earlier case")
            return None
        headers = {"Content-Type": "application/json", **case.headers}
        token = self.tokens[case.token]
        if token is not None:
            headers.update(bearer(token))
        raw = (
            case.raw
            if case.raw is not None
            else (None if case.body is None else orjson.dumps(case.body))
        )
        data = None if raw is None else io.BytesIO(raw)
        async with self.http.request(
            operation.method.upper(), url, data=data, headers=headers
        ) as response:
            status, raw = response.status, await response.read()
            answer_headers = response.headers
        self.answered.setdefault(case.operation, set()).add(status)
        problem = self._problem(operation, case, status, raw, answer_headers)
        if problem:
            self.problems.append(f"{case.label()}: {problem}")
            return None
        body = orjson.loads(raw)
        if case.keep is not None:
            case.keep(self.state, body)
        return body

    def _url(self, operation: Operation, case: Case) -> str:
        path = operation.path
        for name, value in case.path.items():
            resolved = value(self.state) if callable(value) else value
            path = path.replace("{" + name + "}", str(resolved))
        return f"{self.stack.base_url}{path}" + (
            "?" + "&".join(f"{k}={v}" for k, v in case.query.items()) if case.query else ""
        )

    def _problem(
        self,
        operation: Operation,
        case: Case,
        status: int,
        raw: bytes,
        headers: Mapping[str, str],
    ) -> str | None:
        if status != case.expect:
            return f"answered {status}: {raw[:300]!r}"
        documented = operation.spec["responses"].get(str(status))
        if documented is None:
            return f"{status} is not documented ({sorted(operation.spec['responses'])})"
        response = resolve(self.document, documented)
        if response["content"].keys() != {"application/json"}:
            return "the documented answer is not JSON"
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return f"the body is not JSON: {raw[:200]!r}"
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in self.schemas.response(operation, status).iter_errors(body)
        ]
        if errors:
            return f"the body does not match the documented schema: {errors[:3]}"
        for name, header in response.get("headers", {}).items():
            if resolve(self.document, header).get("required") and name not in headers:
                return f"the required header {name} is missing"
        return self._request_problem(operation, case)

    def _request_problem(self, operation: Operation, case: Case) -> str | None:
        if case.body is None or case.schema_accepts is None:
            return None
        expected = (
            case.expect not in (400, 422) if case.schema_accepts == INFER else case.schema_accepts
        )
        accepted = self.schemas.request(operation).is_valid(case.body)
        if accepted != expected:
            verdict = "accepts" if accepted else "refuses"
            return f"the documented request schema {verdict} this body"
        return None


async def _until(check: Callable[[], Any], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _settle(checker: Checker) -> None:
    """Wait for the asynchronous work the reads look at: lookups, the scrape job, the
    bulk radars and a webhook delivery."""
    base, owner, state = checker.stack.base_url, checker.tokens["owner"], checker.state
    assert owner is not None
    for lookup in ("lookup_id", "failed_lookup_id"):
        await poll_lookup(checker.http, base, state[lookup], owner)

    async def finished(url: str, done: Callable[[Any], bool]) -> bool:
        status, body = await get_json(checker.http, f"{base}{url}", bearer(owner))
        return status == 200 and done(body)

    await _until(
        lambda: finished(f"/v1/scrape/jobs/{state['job_id']}", lambda b: b["finished_at"]),
        "the scrape job",
    )
    await _until(
        lambda: finished(
            f"/v1/radars/bulk/{state['bulk_id']}", lambda b: b["status"] == "completed"
        ),
        "the bulk radars",
    )
    await _until(
        lambda: finished("/api/v1/webhooks/deliveries", lambda b: b["deliveries"]),
        "a webhook delivery",
    )


async def test_every_documented_operation_answers_as_documented(
    stack: RunningStack, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with http.get(f"{stack.base_url}/openapi.json") as response:
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        served = await response.read()
    assert served == config.openapi_json(Settings.from_env(stack.env)).encode()
    document = orjson.loads(served)

    checker = Checker(stack, http, document)
    checker.tokens = _tokens(stack)
    admission = [case for op in operations(document) for case in _admission(op)]
    for case in [*_writes(receiver), *admission]:
        await checker.run(case)
    assert not checker.problems, "\n".join(checker.problems)
    await _settle(checker)
    for case in _reads():
        await checker.run(case)

    assert not checker.problems, "\n".join(checker.problems)
    unanswered = [
        op.id
        for op in operations(document)
        if not any(200 <= status < 300 for status in checker.answered.get(op.id, ()))
    ]
    assert unanswered == [], "every operation needs a case that succeeds"
