"""Tests for batchplane.notifier.delivery against a real aiohttp receiver on 127.0.0.1.

The receiver verifies every request's signature with the Standard Webhooks reference
library, as a client's endpoint would, and answers 401 when no secret verifies it. How it
answers otherwise is chosen per request by the query string (``status``, ``retry_after``,
``location``, ``body``, ``repeat``), and by the path for the slow and gated endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from batchplane.notifier.delivery import (
    DEFAULT_SCHEDULE_S,
    AttemptResult,
    RetryPolicy,
    SenderSettings,
    Verdict,
    WebhookSender,
    new_secret,
    parse_retry_after,
    sign,
    sign_with,
    validate_webhook_url,
)

LOOPBACK = ("127.0.0.0/8",)
SECRET = new_secret()
BODY = b'{"type":"batch.completed","data":{"batch_id":"b_1","caf\xc3\xa9":true}}'


# ------------------------------------------------------------------------ receiver


@dataclasses.dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: list[bool]  # one per receiver secret


@dataclasses.dataclass
class Receiver:
    port: int
    secrets: list[str]
    seen: list[Seen]
    release: asyncio.Event  # lets the slow and gated handlers finish
    in_flight: dict[str, int] = dataclasses.field(default_factory=dict)
    max_in_flight: dict[str, int] = dataclasses.field(default_factory=dict)
    arrived: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)

    def url(self, path: str = "/hook", host: str = "127.0.0.1", **query: Any) -> str:
        params = "&".join(f"{key}={value}" for key, value in query.items())
        return f"http://{host}:{self.port}{path}" + (f"?{params}" if params else "")

    async def wait_in_flight(self, host: str, count: int) -> None:
        async with asyncio.timeout(2), self.arrived:
            await self.arrived.wait_for(lambda: self.in_flight.get(host, 0) >= count)


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def _build_app(receiver: Receiver) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        verified = [_verifies(secret, body, headers) for secret in receiver.secrets]
        receiver.seen.append(Seen(request.path, headers, body, verified))
        if not any(verified):
            return web.Response(status=401, text="bad signature")
        if request.path == "/slow":
            await receiver.release.wait()
        elif request.path == "/gated":
            await _gated(receiver, request.host.split(":")[0])
        return _answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _gated(receiver: Receiver, host: str) -> None:
    receiver.in_flight[host] = receiver.in_flight.get(host, 0) + 1
    receiver.max_in_flight[host] = max(
        receiver.max_in_flight.get(host, 0), receiver.in_flight[host]
    )
    async with receiver.arrived:
        receiver.arrived.notify_all()
    try:
        await receiver.release.wait()
        await asyncio.sleep(0.01)  # overlap, so a broken bound would show
    finally:
        receiver.in_flight[host] -= 1


def _answer(request: web.Request) -> web.Response:
    query = request.query
    headers = {}
    if "retry_after" in query:
        headers["Retry-After"] = query["retry_after"]
    if "location" in query:
        headers["Location"] = query["location"]
    status = int(query.get("status", "200"))
    text = query.get("body", "ok") * int(query.get("repeat", "1")) if status != 204 else None
    return web.Response(status=status, text=text, headers=headers)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sock = _listening_socket()
    receiver = Receiver(sock.getsockname()[1], [SECRET], [], asyncio.Event())
    runner = web.AppRunner(_build_app(receiver), shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    yield receiver
    receiver.release.set()
    await runner.cleanup()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that is bound but not listening, so connecting to it is refused."""
    sock = _listening_socket()
    yield sock.getsockname()[1]
    sock.close()


def _settings(**changes: Any) -> SenderSettings:
    base = SenderSettings(timeout_s=2.0, connect_timeout_s=1.0, allow_networks=LOOPBACK)
    return dataclasses.replace(base, **changes)


def _signed(body: bytes = BODY, secrets: list[str] | None = None) -> dict[str, str]:
    return sign_with(secrets or [SECRET], "msg_1", datetime.now(UTC), body)


async def _send_once(url: str, settings: SenderSettings | None = None) -> AttemptResult:
    async with WebhookSender(settings or _settings()) as sender:
        return await sender.send(url, BODY, _signed())


# ------------------------------------------------------------------------- signing


def test_new_secret_format() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
    assert new_secret() != secret


def test_sign_headers_match_the_library() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 900_000, tzinfo=UTC)
    headers = sign(SECRET, "msg_42", when, BODY)
    assert headers["webhook-id"] == "msg_42"
    assert headers["webhook-timestamp"] == str(int(when.timestamp()))
    version, signature = headers["webhook-signature"].split(",")
    assert version == "v1"
    assert len(base64.b64decode(signature)) == 32
    assert headers["webhook-signature"] == Webhook(SECRET).sign("msg_42", when, BODY.decode())


def test_sign_converts_other_timezones_to_utc() -> None:
    utc = datetime.now(UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-5)))
    assert sign(SECRET, "m", elsewhere, BODY) == sign(SECRET, "m", utc, BODY)
    Webhook(SECRET).verify(BODY, sign(SECRET, "m", elsewhere, BODY))


def test_sign_rejects_naive_timestamps_and_no_secrets() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign(SECRET, "m", datetime(2026, 1, 1), BODY)  # noqa: DTZ001
    with pytest.raises(ValueError, match="secret"):
        sign_with([], "m", datetime.now(UTC), BODY)
    with pytest.raises(ValueError, match="empty"):
        sign("whsec_", "m", datetime.now(UTC), BODY)


async def test_signed_delivery_verifies(receiver: Receiver) -> None:
    result = await _send_once(receiver.url())
    assert result.verdict is Verdict.DELIVERED
    assert result.status == 200
    assert result.error is None
    [seen] = receiver.seen
    assert seen.verified == [True]
    assert seen.body == BODY
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == "batchplane-webhooks/1.0"
    assert seen.headers["webhook-id"] == "msg_1"
    # The same headers over a tampered body do not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"b_1", b"b_2"), seen.headers)


async def test_tampered_body_is_refused_by_the_receiver(receiver: Receiver) -> None:
    async with WebhookSender(_settings()) as sender:
        result = await sender.send(receiver.url(), BODY.replace(b"b_1", b"b_2"), _signed(BODY))
    assert result.verdict is Verdict.FAILED
    assert result.status == 401
    assert receiver.seen[0].verified == [False]


async def test_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    async with WebhookSender(_settings()) as sender:
        result = await sender.send(receiver.url(), BODY, _signed(secrets=[new_secret()]))
    assert result.status == 401
    assert receiver.seen[0].verified == [False]


async def test_rotation_header_verifies_with_either_secret(receiver: Receiver) -> None:
    old, new = SECRET, new_secret()
    receiver.secrets = [old, new, new_secret()]  # the third stands for an unrelated secret
    headers = _signed(secrets=[old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    async with WebhookSender(_settings()) as sender:
        result = await sender.send(receiver.url(), BODY, headers)
    assert result.verdict is Verdict.DELIVERED
    assert receiver.seen[0].verified == [True, True, False]


# ------------------------------------------------------------------------ verdicts


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (429, Verdict.RETRY),
        (400, Verdict.FAILED),
        (404, Verdict.FAILED),
        (410, Verdict.DISABLE),
    ],
)
async def test_status_verdicts(receiver: Receiver, status: int, verdict: Verdict) -> None:
    result = await _send_once(receiver.url(status=status, body=f"answer-{status}"))
    assert result.verdict is verdict
    assert result.status == status
    assert result.error is None
    assert result.retry_after_s is None
    assert result.response_snippet == ("" if status == 204 else f"answer-{status}")
    assert result.latency_ms >= 0


async def test_retry_after_seconds(receiver: Receiver) -> None:
    result = await _send_once(receiver.url(status=429, retry_after=120))
    assert result.verdict is Verdict.RETRY
    assert result.retry_after_s == 120.0


async def test_retry_after_http_date(receiver: Receiver) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)
    result = await _send_once(receiver.url(status=503, retry_after=when.replace(" ", "%20")))
    assert result.verdict is Verdict.RETRY
    assert result.retry_after_s is not None
    assert 295 <= result.retry_after_s <= 300


async def test_redirect_is_a_failure_and_not_followed(receiver: Receiver) -> None:
    result = await _send_once(receiver.url(status=301, location=receiver.url("/elsewhere")))
    assert result.verdict is Verdict.FAILED
    assert result.status == 301
    assert [seen.path for seen in receiver.seen] == ["/hook"]


async def test_snippet_is_cut_at_512_characters(receiver: Receiver) -> None:
    result = await _send_once(receiver.url(status=500, body="é", repeat=3000))
    assert result.response_snippet == "é" * 512


async def test_slow_receiver_times_out(receiver: Receiver) -> None:
    result = await _send_once(receiver.url("/slow"), _settings(timeout_s=0.2))
    assert result.verdict is Verdict.RETRY
    assert result.status is None
    assert result.error is not None
    assert "timeout" in result.error
    assert 150 <= result.latency_ms < 1500


async def test_connection_refused_is_retried(closed_port: int) -> None:
    result = await _send_once(f"http://127.0.0.1:{closed_port}/hook")
    assert result.verdict is Verdict.RETRY
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith("connect_failed")


async def test_blocked_ip_literal_without_allow_list(receiver: Receiver) -> None:
    result = await _send_once(receiver.url(), _settings(allow_networks=()))
    assert result.verdict is Verdict.FAILED
    assert result.error == "blocked_address"
    assert receiver.seen == []


async def test_blocked_resolved_name_without_allow_list(receiver: Receiver) -> None:
    settings = _settings(allow_networks=(), host_overrides={"hooks.test": "127.0.0.1"})
    result = await _send_once(receiver.url(host="hooks.test"), settings)
    assert result.verdict is Verdict.FAILED
    assert result.error == "blocked_address"
    assert receiver.seen == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "/relative", "http://127.1/", "http:///x"])
async def test_unusable_urls_fail_without_a_request(url: str) -> None:
    result = await _send_once(url)
    assert result.verdict is Verdict.FAILED
    assert result.error is not None
    assert result.error.startswith("invalid_url")


async def test_send_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await WebhookSender(_settings()).send("https://example.com/", BODY, {})


# --------------------------------------------------------------------- concurrency


async def test_per_endpoint_bound_leaves_other_endpoints_free(receiver: Receiver) -> None:
    # Two endpoints on one server: different host names make different URLs.
    overrides = {"busy.test": "127.0.0.1", "other.test": "127.0.0.1"}
    settings = _settings(per_endpoint_concurrency=2, host_overrides=overrides)
    async with WebhookSender(settings) as sender:
        busy = [
            asyncio.create_task(sender.send(receiver.url("/gated", "busy.test"), BODY, _signed()))
            for _ in range(10)
        ]
        await receiver.wait_in_flight("busy.test", 2)
        other = await sender.send(receiver.url(host="other.test"), BODY, _signed())
        assert other.verdict is Verdict.DELIVERED
        assert receiver.in_flight["busy.test"] == 2  # the other 8 queue in the sender
        assert not any(task.done() for task in busy)
        receiver.release.set()
        results = await asyncio.gather(*busy)
    assert all(result.verdict is Verdict.DELIVERED for result in results)
    assert receiver.max_in_flight["busy.test"] == 2
    assert sum(seen.path == "/gated" for seen in receiver.seen) == 10


async def test_endpoints_are_urls_so_a_busy_path_leaves_other_paths_of_its_host_free(
    receiver: Receiver,
) -> None:
    settings = _settings(per_endpoint_concurrency=2)
    async with WebhookSender(settings) as sender:
        busy = [
            asyncio.create_task(sender.send(receiver.url("/gated"), BODY, _signed()))
            for _ in range(5)
        ]
        await receiver.wait_in_flight("127.0.0.1", 2)
        other = await sender.send(receiver.url("/hook"), BODY, _signed())
        assert other.verdict is Verdict.DELIVERED
        assert receiver.in_flight["127.0.0.1"] == 2  # the busy URL still holds its share
        assert not any(task.done() for task in busy)
        receiver.release.set()
        results = await asyncio.gather(*busy)
    assert all(result.verdict is Verdict.DELIVERED for result in results)
    assert receiver.max_in_flight["127.0.0.1"] == 2


async def test_slow_endpoint_does_not_delay_a_healthy_one(receiver: Receiver) -> None:
    overrides = {"slow.test": "127.0.0.1", "fast.test": "127.0.0.1"}
    settings = _settings(per_endpoint_concurrency=1, max_concurrency=4, host_overrides=overrides)
    async with WebhookSender(settings) as sender:
        started = time.monotonic()
        slow = [
            asyncio.create_task(sender.send(receiver.url("/slow", "slow.test"), BODY, _signed()))
            for _ in range(3)
        ]
        await asyncio.sleep(0.05)  # the slow sends are in flight or queued first
        fast = await sender.send(receiver.url(host="fast.test"), BODY, _signed())
        fast_done = time.monotonic() - started
        assert fast.verdict is Verdict.DELIVERED
        assert not any(task.done() for task in slow)
        await asyncio.sleep(0.3)
        receiver.release.set()
        slow_results = await asyncio.gather(*slow)
        slow_done = time.monotonic() - started
    assert all(result.verdict is Verdict.DELIVERED for result in slow_results)
    assert fast_done < 0.3 < slow_done


# --------------------------------------------------------------------- retry policy


def test_default_schedule_is_about_a_day() -> None:
    policy = RetryPolicy()
    assert policy.schedule_s == DEFAULT_SCHEDULE_S
    assert 20 * 3600 < sum(policy.schedule_s) < 30 * 3600


def test_schedule_exhaustion() -> None:
    policy = RetryPolicy(schedule_s=(1.0, 2.0, 3.0), jitter=0.0)
    rng = random.Random(1)
    assert [policy.next_delay(n, None, rng) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 3.0, None, None]
    assert RetryPolicy(schedule_s=()).next_delay(1, None, rng) is None
    with pytest.raises(ValueError, match="start at 1"):
        policy.next_delay(0, None, rng)


def test_jitter_bounds_with_a_seeded_rng() -> None:
    policy = RetryPolicy(schedule_s=(100.0,), jitter=0.2)
    rng = random.Random(42)
    delays = [policy.next_delay(1, None, rng) for _ in range(500)]
    assert all(d is not None and 80.0 <= d <= 120.0 for d in delays)
    assert len(set(delays)) > 400  # actually spread, not a constant
    again = random.Random(42)
    assert delays[:5] == [policy.next_delay(1, None, again) for _ in range(5)]


def test_retry_after_honoured_and_capped() -> None:
    policy = RetryPolicy(schedule_s=(5.0, 300.0, 1800.0), jitter=0.2)
    rng = random.Random(7)
    assert policy.next_delay(1, 60.0, rng) == 60.0  # larger than ~5 s: honoured
    assert policy.next_delay(1, 1e6, rng) == 1800.0  # capped at the largest delay
    delay = policy.next_delay(2, 10.0, rng)  # smaller than ~300 s: the schedule wins
    assert delay is not None
    assert 240.0 <= delay <= 360.0
    assert policy.next_delay(3, 1e6, rng) == pytest.approx(1800.0, rel=0.2)
    assert policy.next_delay(4, 60.0, rng) is None  # exhausted even with Retry-After


def test_parse() -> None:
    assert RetryPolicy.parse("5s,5m,30m,2h").schedule_s == (5.0, 300.0, 1800.0, 7200.0)
    assert RetryPolicy.parse(" 1.5s , 2M ", jitter=0.1) == RetryPolicy((1.5, 120.0), 0.1)
    for bad in ("", "5", "5d", "5s,,5m", "-5s", "s"):
        with pytest.raises(ValueError, match="retry delay"):
            RetryPolicy.parse(bad)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.0)


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Fri, 01 May 2026 12:02:00 GMT", now) == 120.0
    assert parse_retry_after("Fri, 01 May 2026 11:00:00 GMT", now) == 0.0  # in the past
    for bad in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(bad, now) is None


# -------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://hooks.example.com/batchplane", None),
        ("https://hooks.example.com:8443/x?y=1", None),
        ("http://hooks.example.com/x", "https"),
        ("http://receiver.internal/x", None),  # an operator-allowed name
        ("http://RECEIVER.internal./x", None),
        ("http://127.0.0.1:9000/x", None),  # inside allow_networks
        ("http://8.8.8.8/x", "https"),  # public, but not an allowed network
        ("https://8.8.8.8/x", None),
        ("https://10.1.2.3/x", "non-public"),
        ("https://[::1]/x", "non-public"),
        ("https://127.1/x", "canonical"),
        ("ftp://hooks.example.com/x", "https"),
        ("/relative/path", "https"),
        ("https:///nohost", "host"),
        ("https://" + "a" * 3000 + ".com/", "longer"),
    ],
)
def test_validate_webhook_url(url: str, error: str | None) -> None:
    result = validate_webhook_url(url, {"receiver.internal"}, LOOPBACK)
    if error is None:
        assert result is None
    else:
        assert result is not None
        assert error in result
