"""Webhook delivery mechanics: signing, retry timing and one guarded HTTP attempt.

Nothing here touches the database or Kafka; the notifier service decides what to send
and records what happened. The pieces:

* :func:`sign` / :func:`sign_with` build the Standard Webhooks headers
  (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with the
  ``standardwebhooks`` reference library, so receivers can verify with any
  Standard Webhooks implementation. Several secrets give several signatures, which is
  how a secret is rotated without dropping deliveries.
* :class:`RetryPolicy` says how long to wait before the next attempt.
* :class:`WebhookSender` makes one POST through an SSRF-guarded session (the address
  policy of :mod:`batchplane.lookup.fetch`) and turns whatever happened into an
  :class:`AttemptResult` with a :class:`Verdict`; it never raises for network or HTTP
  failures.
* :func:`validate_webhook_url` is the intake-time check of a client's ``webhook_url``.

``AttemptResult.error`` starts with a stable code, optionally followed by ``": "`` and
a human-readable detail: ``invalid_url``, ``blocked_address``, ``timeout``,
``connect_failed`` or ``bad_response``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import enum
import ipaddress
import math
import random
import re
import secrets as secrets_module
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Self

import aiohttp
from multidict import CIMultiDict
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from yarl import URL

from batchplane.lookup.fetch import (
    AddressPolicy,
    BadUrl,
    BlockedAddress,
    GuardedClient,
    GuardedResolver,
    guarded_session,
    ip_literal,
)

__all__ = [
    "DEFAULT_SCHEDULE_S",
    "SNIPPET_CHARS",
    "USER_AGENT",
    "AttemptResult",
    "RetryPolicy",
    "SenderSettings",
    "Verdict",
    "WebhookSender",
    "classify_status",
    "new_secret",
    "parse_retry_after",
    "sign",
    "sign_with",
    "validate_webhook_url",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the public format marker, not a secret
_SECRET_BYTES: Final = 32  # an HMAC-SHA256 key as long as the hash
USER_AGENT: Final = "batchplane-webhooks/1.0"
SNIPPET_CHARS: Final = 512
# UTF-8 needs at most 4 bytes a character, so this many bytes always hold the snippet.
_SNIPPET_BYTES: Final = SNIPPET_CHARS * 4
_MAX_URL_LENGTH: Final = 2048

# About a day in total, the schedule Svix uses: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_SCHEDULE_S: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

_SCHEMES: Final = frozenset({"http", "https"})
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([smh])", re.IGNORECASE | re.ASCII)
# Same rule as batchplane.lookup.fetch: a host whose last label is a number is read as an
# IPv4 address in some legacy form ("127.1", "0x7f.1", "2130706433").


# ------------------------------------------------------------------------- signing


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return _SECRET_PREFIX + base64.b64encode(secrets_module.token_bytes(_SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` signed with one ``whsec_…`` secret.

    ``timestamp`` must be timezone-aware; ``body`` must be UTF-8 (it is JSON). Raises
    ``ValueError`` for a naive timestamp, an unusable secret or a non-UTF-8 body.
    """
    return sign_with([secret], message_id, timestamp, body)


def sign_with(
    secrets: Sequence[str], message_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """Like :func:`sign`, with one ``v1,…`` signature per active secret.

    The signatures are space-separated in ``webhook-signature``; receivers accept the
    message if any of them matches their secret, so during a rotation both the old and
    the new secret verify.
    """
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    when = _utc(timestamp)
    payload = body.decode("utf-8")  # the library signs text, and verifies decoded text
    signatures = [_webhook(secret).sign(message_id, when, payload) for secret in secrets]
    return {
        "webhook-id": message_id,
        # The library floors the same UTC instant when it signs, so the two agree.
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def _utc(timestamp: datetime) -> datetime:
    # The library stamps the datetime as UTC without converting it (replace(tzinfo=…)),
    # so anything but a UTC datetime would be signed as the wrong instant.
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return timestamp.astimezone(UTC)


def _webhook(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except EmptyWebhookSecretError as exc:
        raise ValueError("webhook secret is empty") from exc


# ---------------------------------------------------------------------- retry timing


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again.

    ``schedule_s[n - 1]`` is the delay after attempt ``n``; once the schedule is used up
    the delivery has failed for good (an empty schedule never retries). Each delay is
    spread by ± ``jitter`` (a fraction) so endpoints that failed together are not retried
    in lockstep.
    """

    schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if any(not math.isfinite(delay) or delay < 0 for delay in self.schedule_s):
            raise ValueError("retry delays must be finite and non-negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    @classmethod
    def parse(cls, text: str, jitter: float = 0.2) -> Self:
        """Build a policy from a settings string such as ``"5s,5m,30m,2h"``.

        Each comma-separated item is a number with a unit: ``s``, ``m`` or ``h``.
        """
        items = [item.strip() for item in text.split(",")]
        return cls(schedule_s=tuple(_parse_duration(item) for item in items), jitter=jitter)

    @property
    def max_delay_s(self) -> float:
        """The longest scheduled delay (0 for an empty schedule)."""
        return max(self.schedule_s, default=0.0)

    def next_delay(
        self, attempt: int, retry_after: float | None, rng: random.Random
    ) -> float | None:
        """Seconds to wait after attempt number ``attempt`` (1-based), or None if exhausted.

        A ``retry_after`` (the endpoint's Retry-After, in seconds) longer than the jittered
        delay wins, capped at the longest scheduled delay so an endpoint cannot park its
        deliveries indefinitely.
        """
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if attempt > len(self.schedule_s):
            return None
        delay = self.schedule_s[attempt - 1] * rng.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None and retry_after > delay:
            return max(delay, min(retry_after, self.max_delay_s))
        return delay


def _parse_duration(item: str) -> float:
    match = _DURATION_RE.fullmatch(item)
    if match is None:
        raise ValueError(f"bad retry delay {item!r}: expected a number and s, m or h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


# ------------------------------------------------------------------- attempt results


class Verdict(enum.Enum):
    """What one delivery attempt means for the delivery."""

    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # timeout, connection failure, 5xx, 429: try again later
    FAILED = "failed"  # 3xx, other 4xx, refused URL or address: do not retry
    DISABLE = "disable"  # 410 Gone: the endpoint asks to be disabled


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one POST to an endpoint.

    ``status`` is None when no HTTP response arrived. ``response_snippet`` is at most the
    first 512 characters of the response body. ``error`` explains a failure without a
    usable response (see the module docstring for its codes). ``retry_after_s`` is the
    response's Retry-After in seconds, from either of its forms, when present and valid.
    """

    verdict: Verdict
    status: int | None
    latency_ms: int
    response_snippet: str
    error: str | None
    retry_after_s: float | None


def classify_status(status: int) -> Verdict:
    """The verdict for an HTTP response status."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 410:
        return Verdict.DISABLE
    if status == 429 or status >= 500:
        return Verdict.RETRY
    return Verdict.FAILED


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date), else None.

    A date in the past gives 0. ``now`` (timezone-aware) defaults to the current time.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _error_result(verdict: Verdict, error: str, latency_ms: int = 0) -> AttemptResult:
    return AttemptResult(verdict, None, latency_ms, "", error, None)


# -------------------------------------------------------------------------- sender


@dataclass(frozen=True)
class SenderSettings:
    """Limits and outbound policy of a :class:`WebhookSender`.

    ``timeout_s`` bounds a whole attempt (connect, request, response head and snippet).
    ``allow_networks`` are CIDRs allowed despite being non-public (e.g. "127.0.0.0/8");
    ``host_overrides`` maps host names to IPs like ``curl --resolve`` (still
    policy-checked).
    """

    timeout_s: float = 15.0
    connect_timeout_s: float = 5.0
    per_endpoint_concurrency: int = 4
    max_concurrency: int = 200
    allow_networks: tuple[str, ...] = ()
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = USER_AGENT


# An endpoint is one webhook URL, as for the dispatcher that claims deliveries per URL:
# were it the host, a URL hanging there would hold up every other URL on that host.
_EndpointKey = str


@dataclass
class _Slot:
    semaphore: asyncio.Semaphore
    users: int = 0


class _EndpointSlots:
    """One semaphore per endpoint URL, dropped when nobody holds or awaits it.

    Dropping idle ones keeps memory bounded by the endpoints in flight, not by every
    endpoint ever seen.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: dict[_EndpointKey, _Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    @contextlib.asynccontextmanager
    async def hold(self, key: _EndpointKey) -> AsyncIterator[None]:
        slot = self._slots.setdefault(key, _Slot(asyncio.Semaphore(self._size)))
        slot.users += 1
        try:
            async with slot.semaphore:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[key]


class _Refused(Exception):
    """A URL the sender will not even try; ``code`` goes into ``AttemptResult.error``."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        super().__init__(detail or code)
        self.code = code
        self.detail = detail

    @property
    def error(self) -> str:
        """``code`` or ``code: detail``, the form of ``AttemptResult.error``."""
        return self.code if self.detail is None else f"{self.code}: {self.detail}"


class WebhookSender(GuardedClient):
    """POSTs signed webhook bodies through one pooled, SSRF-guarded aiohttp session.

    Use ``async with WebhookSender(settings) as sender`` or :meth:`start` and
    :meth:`close`. Redirects are never followed, environment proxies are ignored and
    cookies are not kept. At most ``per_endpoint_concurrency`` requests go to one
    endpoint URL at once and ``max_concurrency`` in all, so a slow endpoint only queues
    its own deliveries, even when other endpoints share its host.
    """

    def __init__(self, settings: SenderSettings | None = None) -> None:
        self._settings = settings or SenderSettings()
        if self._settings.per_endpoint_concurrency < 1 or self._settings.max_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        # Built here so bad operator configuration fails at construction, not per send.
        self._policy = AddressPolicy(self._settings.allow_networks)
        self._endpoints = _EndpointSlots(self._settings.per_endpoint_concurrency)
        self._global = asyncio.Semaphore(self._settings.max_concurrency)
        super().__init__()

    @property
    def settings(self) -> SenderSettings:
        """The settings this sender was built with."""
        return self._settings

    def _open(self) -> tuple[aiohttp.ClientSession, GuardedResolver]:
        settings = self._settings
        return guarded_session(
            self._policy,
            settings.host_overrides,
            limit=settings.max_concurrency,
            timeout=aiohttp.ClientTimeout(
                total=settings.timeout_s, sock_connect=settings.connect_timeout_s
            ),
        )

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        """POST ``body`` (JSON) with ``headers`` (the signature headers) to ``url``.

        Network and HTTP failures come back as a result, never as an exception. Time spent
        waiting for a concurrency slot is not part of the timeout or the latency.
        """
        session = self._require_session()
        try:
            target = _target_url(url)
            self._check_ip_literal(target)
        except _Refused as exc:
            return _error_result(Verdict.FAILED, exc.error)
        # The endpoint slot is taken first so deliveries queued behind a slow endpoint do
        # not sit on global slots that healthy endpoints could use.
        async with self._endpoints.hold(_endpoint_key(target)), self._global:
            return await self._attempt(session, target, body, headers)

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("WebhookSender.start() has not been called")
        return self._session

    def _check_ip_literal(self, url: URL) -> None:
        """Apply the policy to IP-literal hosts, which aiohttp never passes to a resolver."""
        ip = _ip_literal(url)
        if ip is not None and not self._policy.is_allowed(ip):
            raise _Refused("blocked_address")

    def _request_headers(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        # Case-insensitive, so a caller's "content-type" is replaced, not duplicated.
        merged = CIMultiDict(headers)
        merged["Content-Type"] = "application/json"
        merged["User-Agent"] = self._settings.user_agent
        return merged

    async def _attempt(
        self, session: aiohttp.ClientSession, url: URL, body: bytes, headers: Mapping[str, str]
    ) -> AttemptResult:
        started = time.monotonic()
        try:
            async with session.post(
                url, data=body, headers=self._request_headers(headers), allow_redirects=False
            ) as response:
                snippet = await _read_snippet(response)
                return _response_result(response, snippet, _elapsed_ms(started))
        except BlockedAddress:
            # No detail: the resolver's message lists the refused addresses a name resolved
            # to, and the client who owns the endpoint may see this error.
            return _error_result(Verdict.FAILED, "blocked_address", _elapsed_ms(started))
        except TimeoutError:
            # Before OSError: TimeoutError (aiohttp's included) is an OSError subclass.
            detail = f"timeout: no response within {self._settings.timeout_s:g}s"
            return _error_result(Verdict.RETRY, detail, _elapsed_ms(started))
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            return _error_result(Verdict.FAILED, f"invalid_url: {exc}", _elapsed_ms(started))
        except (aiohttp.ClientConnectionError, OSError) as exc:
            return _error_result(Verdict.RETRY, f"connect_failed: {exc}", _elapsed_ms(started))
        except aiohttp.ClientError as exc:
            return _error_result(Verdict.RETRY, f"bad_response: {exc}", _elapsed_ms(started))


def _response_result(
    response: aiohttp.ClientResponse, snippet: str, latency_ms: int
) -> AttemptResult:
    return AttemptResult(
        verdict=classify_status(response.status),
        status=response.status,
        latency_ms=latency_ms,
        response_snippet=snippet,
        error=None,
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )


async def _read_snippet(response: aiohttp.ClientResponse) -> str:
    """The first characters of the body, best effort.

    The status already decides the verdict, so a body that breaks off or stalls only
    shortens the snippet. The rest of the body is never read: the connection is dropped
    instead of pooled when some is left.
    """
    data = bytearray()
    try:
        while len(data) < _SNIPPET_BYTES:
            chunk = await response.content.read(_SNIPPET_BYTES - len(data))
            if not chunk:
                break
            data += chunk
    except (aiohttp.ClientError, TimeoutError):
        response.close()
    else:
        if not response.content.at_eof():
            response.close()
    return _decode(bytes(data), response.charset)[:SNIPPET_CHARS]


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset label: UTF-8 is the best guess for JSON
        return data.decode("utf-8", errors="replace")


def _endpoint_key(url: URL) -> _EndpointKey:
    return str(url.with_fragment(None))


# ------------------------------------------------------------------------- URLs


def _target_url(raw: str) -> URL:
    """An absolute http(s) URL with a host, or :class:`_Refused`."""
    if len(raw) > _MAX_URL_LENGTH:
        raise _Refused("invalid_url", f"URL longer than {_MAX_URL_LENGTH} characters")
    try:
        url = URL(raw)
    except (ValueError, TypeError) as exc:
        raise _Refused("invalid_url", f"malformed URL: {exc}") from exc
    if url.scheme not in _SCHEMES:
        raise _Refused("invalid_url", "URL must be absolute http or https")
    if not url.raw_host:
        raise _Refused("invalid_url", "URL has no host")
    return url


def _ip_literal(url: URL) -> _IPAddress | None:
    """`ip_literal` of the fetcher, with its refusal in this module's terms."""
    try:
        return ip_literal(url)
    except BadUrl as exc:
        raise _Refused("invalid_url", str(exc)) from exc


def validate_webhook_url(
    url: str, allow_hosts: Collection[str], allow_networks: Iterable[str]
) -> str | None:
    """Why ``url`` cannot be a client's ``webhook_url``, or None if it can.

    It must be an absolute https URL. Plain http is accepted only for hosts the operator
    allows: a name in ``allow_hosts`` or an IP literal inside ``allow_networks`` (CIDRs).
    An IP literal the outbound address policy refuses is rejected up front, since no
    delivery to it could ever be made.
    """
    networks = tuple(allow_networks)
    try:
        target = _target_url(url)
    except _Refused as exc:
        return f"webhook_url must be an absolute https URL: {exc.detail}"
    try:
        ip = _ip_literal(target)
    except _Refused as exc:
        return f"webhook_url is invalid: {exc.detail}"
    if target.scheme == "http" and not _operator_allowed(target, ip, allow_hosts, networks):
        return "webhook_url must use https"
    if ip is not None and not AddressPolicy(networks).is_allowed(ip):
        return "webhook_url points at a non-public address"
    return None


def _operator_allowed(
    url: URL, ip: _IPAddress | None, allow_hosts: Collection[str], networks: Iterable[str]
) -> bool:
    if ip is not None:
        return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in networks)
    host = (url.host or "").rstrip(".").lower()
    return host in {allowed.rstrip(".").lower() for allowed in allow_hosts}
