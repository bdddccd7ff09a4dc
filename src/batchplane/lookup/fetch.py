"""SSRF-safe HTTP(S) fetching of untrusted URLs (home pages, scrape targets, webhooks).

Every address the client connects to is checked against an :class:`AddressPolicy` that
refuses loopback, private, link-local, CGNAT, multicast, reserved and unspecified
addresses (and IPv6 forms embedding them) unless an operator allows the network:

* host names are resolved by :class:`GuardedResolver`, an aiohttp resolver that drops
  every refused address from the answer. aiohttp connects only to addresses its resolver
  returned, so the checked answer is the used answer and a DNS answer that changes
  between check and connect (DNS rebinding) cannot slip through;
* aiohttp connects to IP-literal hosts without asking the resolver, so the fetcher
  checks those itself before each request;
* redirects are followed by hand, one validated hop at a time.

Errors (``code`` is the machine-readable string, ``retryable`` a hint for callers)::

    FetchError                      code             retryable
     +-- BadUrl                     invalid_url         no
     +-- BlockedAddress             blocked_address     no
     +-- TooManyRedirects           too_many_redirects  no
     +-- FetchTimeout               fetch_timeout       yes
     +-- BadResponse                bad_response        yes
     +-- ConnectFailed              connect_failed      yes
          +-- DnsFailed             dns_failed          yes
          +-- TlsFailed             tls_failed          no

aiohttp and OS exceptions are translated into this hierarchy in one place,
:func:`_translate_error`.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

__all__ = [
    "AddressPolicy",
    "BadResponse",
    "BadUrl",
    "BlockedAddress",
    "ConnectFailed",
    "DnsFailed",
    "FetchError",
    "FetchResult",
    "FetchSettings",
    "FetchTimeout",
    "Fetcher",
    "GuardedResolver",
    "TlsFailed",
    "TooManyRedirects",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK: Final = 64 * 1024
# WHATWG URL parsing (and getaddrinfo) read a host whose last label is a number as an
# IPv4 address in any of the legacy forms ("127.1", "0x7f.1", "2130706433").
_NUMERIC_LABEL_RE: Final = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$", re.IGNORECASE)
# A URL reference that has an authority part ("//host", "scheme://host").
_AUTHORITY_RE: Final = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


# --------------------------------------------------------------------------- errors


class FetchError(Exception):
    """Base class of every fetch failure.

    ``code`` is a stable machine-readable string; ``retryable`` says whether trying the
    same URL again later may succeed. ``url`` is the URL being fetched when it failed.
    """

    code: str = "fetch_failed"
    retryable: bool = True

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class BadUrl(FetchError):
    """The URL (or a redirect target) is malformed or not http/https."""

    code = "invalid_url"
    retryable = False


class BlockedAddress(FetchError):
    """Every address for the host is refused by the :class:`AddressPolicy`."""

    code = "blocked_address"
    retryable = False


class TooManyRedirects(FetchError):
    """More than ``FetchSettings.max_redirects`` redirects (including loops)."""

    code = "too_many_redirects"
    retryable = False


class FetchTimeout(FetchError):
    """The whole fetch, redirects included, exceeded ``FetchSettings.timeout_s``."""

    code = "fetch_timeout"


class BadResponse(FetchError):
    """The server answered with something that is not a readable HTTP response."""

    code = "bad_response"


class ConnectFailed(FetchError):
    """No connection could be made or kept (refused, reset, connect timeout)."""

    code = "connect_failed"


class DnsFailed(ConnectFailed):
    """The host name did not resolve to any address."""

    code = "dns_failed"


class TlsFailed(ConnectFailed):
    """The TLS handshake failed, e.g. an untrusted or mismatched certificate."""

    code = "tls_failed"
    retryable = False


# ----------------------------------------------------------------- settings, result


@dataclass(frozen=True)
class FetchSettings:
    """Limits and test hooks for a :class:`Fetcher`.

    ``allow_networks`` are CIDRs allowed despite being non-public (e.g. "127.0.0.0/8").
    ``https_port``/``http_port`` are where ``https://host/`` and ``http://host/`` connect
    when the URL names no port (a test hook). ``host_overrides`` maps host names to IP
    addresses, like ``curl --resolve``; overridden addresses are still policy-checked.
    ``ca_file`` adds trusted CA certificates to the system trust store.
    ``keepalive_s`` is how long a connection stays pooled once idle.
    """

    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_body_bytes: int = 2_000_000
    max_redirects: int = 5
    user_agent: str = "batchplane-lookup/1.0"
    allow_networks: tuple[str, ...] = ()
    https_port: int = 443
    http_port: int = 80
    host_overrides: Mapping[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    max_concurrency: int = 100
    # Short, because the pool has no cap on idle connections, only on busy ones, and
    # lookups reach thousands of distinct hosts: at aiohttp's 15 s, 4,000 lookups of the
    # bench page left 4,000 idle sockets and their buffers (+45 MB of peak RSS). Two
    # seconds still reuses a connection across redirects and same-site bursts.
    keepalive_s: float = 2.0


@dataclass(frozen=True)
class FetchResult:
    """The final response of a fetch.

    ``headers`` is a case-insensitive multidict copy of the response headers: indexing
    gives the first value, ``headers.getall(name)`` every value of a repeated header.
    ``cookies`` holds name -> value from the final response's Set-Cookie headers.
    ``text`` is ``body`` decoded with the Content-Type charset, else UTF-8, with
    undecodable bytes replaced. ``truncated`` is true when the body was cut at
    ``max_body_bytes``. ``redirects`` counts the redirects followed to reach ``url``.
    """

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    cookies: dict[str, str]
    body: bytes
    text: str
    truncated: bool
    redirects: int


# ------------------------------------------------------------------ address policy

# Refused in addition to whatever Python's ipaddress flags as non-global, so the policy
# does not drift with the Python version's idea of "private".
_BLOCKED_NETWORKS: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


class AddressPolicy:
    """Decides whether the fetcher may connect to an IP address.

    Non-public addresses are refused unless inside one of ``allow_networks``. An
    IPv4-mapped (``::ffff:a.b.c.d``) or NAT64 (``64:ff9b::/96``) address is judged by
    the IPv4 address it stands for; a 6to4 address is refused if the IPv4 address it
    embeds would be.
    """

    def __init__(self, allow_networks: Iterable[str] = ()) -> None:
        self._allowed = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in allow_networks)

    def is_allowed(self, address: str | IPAddress) -> bool:
        """True if connecting to ``address`` is permitted; unparsable input is refused."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        target = _translated_ipv4(ip) or ip
        if any(candidate in net for candidate in {ip, target} for net in self._allowed):
            return True
        if _is_non_public(target):
            return False
        sixtofour = ip.sixtofour if isinstance(ip, ipaddress.IPv6Address) else None
        return sixtofour is None or not _is_non_public(sixtofour)


def _translated_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a mapped or NAT64 IPv6 address actually reaches, if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_non_public(ip: IPAddress) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version)
    )


# ------------------------------------------------------------------------ resolver


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that answers only with addresses the policy allows.

    ``host_overrides`` (host name -> IP) are answered without DNS. Everything else goes
    to ``inner``. Refused addresses are removed from the answer; if none is left,
    :class:`BlockedAddress` is raised, so the connector never sees a refused address.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        inner: AbstractResolver,
        host_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._policy = policy
        self._inner = inner
        self._overrides = _normalise_overrides(host_overrides or {})

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and return only the allowed addresses."""
        override = self._overrides.get(_host_key(host))
        if override is not None:
            answers = [_numeric_answer(host, override, port)]
        else:
            answers = await self._inner.resolve(host, port, family)
        if not answers:
            # An OSError makes aiohttp report a DNS failure (it cannot handle an empty
            # answer); an empty answer is not a policy refusal.
            raise OSError(f"no addresses found for {host}")
        allowed = [answer for answer in answers if self._policy.is_allowed(answer["host"])]
        if not allowed:
            refused = ", ".join(sorted({answer["host"] for answer in answers}))
            raise BlockedAddress(f"{host} resolves only to refused addresses: {refused}")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


def _host_key(host: str) -> str:
    return host.rstrip(".").lower()


def _normalise_overrides(overrides: Mapping[str, str]) -> dict[str, IPAddress]:
    """Validate override targets up front so a typo fails at construction, not per fetch."""
    return {_host_key(host): ipaddress.ip_address(ip) for host, ip in overrides.items()}


def _numeric_answer(host: str, ip: IPAddress, port: int) -> ResolveResult:
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return ResolveResult(
        hostname=host,
        host=str(ip),
        port=port,
        family=family,
        proto=0,
        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    )


# ------------------------------------------------------------------------- fetcher


@dataclass
class _Hop:
    """Where a fetch has got to, so an error can name the URL that actually failed."""

    url: URL
    redirects: int = 0


class GuardedClient:
    """Owns one SSRF-guarded aiohttp session: `start` opens it (idempotent, inside the
    event loop), `close` closes it and its resolver; usable as `async with`.
    Subclasses say how their session is built in `_open`."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    def _open(self) -> tuple[aiohttp.ClientSession, GuardedResolver]:
        raise NotImplementedError

    async def start(self) -> None:
        """Create the HTTP session (idempotent). Must run inside the event loop."""
        if self._session is None:
            self._session, self._resolver = self._open()

    async def close(self) -> None:
        """Close the session and its connections (idempotent)."""
        session, self._session = self._session, None
        resolver, self._resolver = self._resolver, None
        if session is not None:
            await session.close()
        if resolver is not None:
            # The connector does not own a resolver passed in, so close it ourselves.
            await resolver.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Fetcher(GuardedClient):
    """Fetches untrusted http/https URLs through one pooled, SSRF-guarded aiohttp session.

    Use ``async with Fetcher(settings) as fetcher`` or call :meth:`start` and
    :meth:`close`. Credentials in URLs are never sent, cookies are not kept between
    requests or redirect hops, and environment proxies are ignored.
    """

    def __init__(self, settings: FetchSettings | None = None) -> None:
        self._settings = settings or FetchSettings()
        # Parsed here so bad operator configuration fails at construction.
        self._policy = AddressPolicy(self._settings.allow_networks)
        _normalise_overrides(self._settings.host_overrides)
        # Fetches wait here for a slot, outside their deadline: a burst of lookups must
        # not time out queueing for the pool before it ever reaches the site.
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        super().__init__()

    @property
    def settings(self) -> FetchSettings:
        """The settings this fetcher was built with."""
        return self._settings

    def _open(self) -> tuple[aiohttp.ClientSession, GuardedResolver]:
        settings = self._settings
        return guarded_session(
            self._policy,
            settings.host_overrides,
            limit=settings.max_concurrency,
            keepalive_s=settings.keepalive_s,
            # Total time is bounded by our own deadline around the redirect loop.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout_s),
            ssl_context=self._ssl_context(),
            headers={"User-Agent": settings.user_agent},
        )

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self._settings.ca_file is not None:
            # Added to, not instead of, the system store: an operator's private CA
            # should not make public sites unverifiable.
            context.load_verify_locations(cafile=self._settings.ca_file)
        return context

    async def fetch(self, url: str) -> FetchResult:
        """GET ``url``, following up to ``max_redirects`` redirects, each hop validated.

        Raises a :class:`FetchError` subclass; HTTP error statuses are not errors.
        """
        return await self._fetch(_parse_url(url))

    async def fetch_home_page(self, domain: str) -> FetchResult:
        """Fetch ``https://{domain}/``, falling back to ``http://{domain}/``.

        The fallback happens only when the HTTPS connection or TLS handshake fails, not
        on HTTP error statuses, timeouts, DNS failures or refused addresses.
        """
        try:
            return await self._fetch(_home_page_url("https", domain))
        except DnsFailed:
            raise  # plain http would resolve the same name to nothing as well
        except ConnectFailed:
            return await self._fetch(_home_page_url("http", domain))

    async def _fetch(self, url: URL) -> FetchResult:
        hop = _Hop(url)
        try:
            async with self._slots, asyncio.timeout(self._settings.timeout_s):
                return await self._follow_redirects(hop)
        except FetchError as exc:
            if exc.url is None:  # raised by the resolver, which does not know the URL
                exc.url = str(hop.url)
            raise
        except (aiohttp.ClientError, OSError) as exc:
            # TimeoutError (ours and aiohttp's) is an OSError, so it lands here too.
            raise _translate_error(exc, hop.url) from exc

    async def _follow_redirects(self, hop: _Hop) -> FetchResult:
        while True:
            async with await self._send(hop.url) as response:
                target = _redirect_target(response, hop.url)
                if target is None:
                    return await self._result(response, hop.url, hop.redirects)
            if hop.redirects >= self._settings.max_redirects:
                raise TooManyRedirects(
                    f"more than {self._settings.max_redirects} redirects", url=str(hop.url)
                )
            hop.redirects += 1
            hop.url = target

    async def _send(self, url: URL) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("Fetcher.start() has not been called")
        self._check_ip_literal(url)
        connect_url = self._with_port_override(url)
        headers: dict[str, str] = {}
        if connect_url is not url:
            # Keep the Host header the URL's own, not the test port we connect to.
            headers["Host"] = url.host_port_subcomponent or ""
        return await self._session.get(connect_url, headers=headers, allow_redirects=False)

    def _check_ip_literal(self, url: URL) -> None:
        """Apply the policy to IP-literal hosts, which aiohttp never passes to a resolver."""
        ip = ip_literal(url)
        if ip is not None and not self._policy.is_allowed(ip):
            raise BlockedAddress(f"address {ip} is refused", url=str(url))

    def _with_port_override(self, url: URL) -> URL:
        if url.explicit_port is not None:
            return url
        port = self._settings.https_port if url.scheme == "https" else self._settings.http_port
        if port == _DEFAULT_PORTS[url.scheme]:
            return url
        return url.with_port(port)

    async def _result(
        self, response: aiohttp.ClientResponse, url: URL, redirects: int
    ) -> FetchResult:
        body, truncated = await _read_capped(response, self._settings.max_body_bytes)
        if truncated:
            # The rest of the body is still on the wire: drop the connection, don't pool it.
            response.close()
        return FetchResult(
            url=str(url),
            status=response.status,
            headers=CIMultiDictProxy(CIMultiDict(response.headers)),
            cookies={name: morsel.value for name, morsel in response.cookies.items()},
            body=body,
            text=_decode(body, response.charset),
            truncated=truncated,
            redirects=redirects,
        )


# ------------------------------------------------------------------------- helpers


def _parse_url(raw: str) -> URL:
    try:
        url = URL(raw)
    except (ValueError, TypeError) as exc:
        raise BadUrl(f"malformed URL: {exc}", url=raw) from exc
    return _checked_url(url, raw)


def _home_page_url(scheme: str, domain: str) -> URL:
    try:
        url = URL.build(scheme=scheme, host=domain, path="/")
    except (ValueError, TypeError) as exc:
        raise BadUrl(f"invalid domain {domain!r}: {exc}", url=domain) from exc
    return _checked_url(url, domain)


def _checked_url(url: URL, raw: str) -> URL:
    """Require an absolute http(s) URL; drop credentials and the fragment."""
    if url.scheme not in _SCHEMES:
        raise BadUrl(f"unsupported scheme {url.scheme!r}", url=raw)
    if not url.raw_host:
        raise BadUrl("URL has no host", url=raw)
    return url.with_user(None).with_fragment(None)


def guarded_session(
    policy: AddressPolicy,
    host_overrides: Mapping[str, str],
    *,
    limit: int,
    timeout: aiohttp.ClientTimeout,
    keepalive_s: float = 15.0,
    ssl_context: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[aiohttp.ClientSession, GuardedResolver]:
    """An aiohttp session that only ever connects to addresses `policy` allows.

    The connector connects only to what its resolver returned, so the address checked
    is the address used. The caller closes the session, then the resolver (the
    connector does not own a resolver it was given). No proxies from the environment,
    no cookie jar. URLs with IP literals skip resolvers: check them with `ip_literal`.
    """
    resolver = GuardedResolver(policy, aiohttp.DefaultResolver(), host_overrides)
    connector = aiohttp.TCPConnector(
        limit=limit,
        keepalive_timeout=keepalive_s,
        resolver=resolver,
        ssl=ssl_context if ssl_context is not None else True,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=dict(headers or {}),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,  # never route through HTTP(S)_PROXY from the environment
    )
    return session, resolver


def ip_literal(url: URL) -> IPAddress | None:
    """The host as an IP address if it is (or would be taken for) an IP literal.

    This must match at least every host aiohttp treats as an IP literal (anything with
    a colon or only digits and dots), because those bypass the resolver. Numeric forms
    that are not canonical dotted quads are rejected outright.
    """
    raw_host = url.raw_host or ""
    name = raw_host.rstrip(".")
    if ":" in raw_host:
        candidate = url.host or ""  # decoded, so a zone id reads "%eth0" not "%25eth0"
    elif name.replace(".", "").isdigit() or _NUMERIC_LABEL_RE.match(name.rpartition(".")[2]):
        candidate = name
    else:
        return None
    try:
        return ipaddress.ip_address(candidate)
    except ValueError as exc:
        raise BadUrl(f"not a canonical IP address: {raw_host!r}", url=str(url)) from exc


def _redirect_target(response: aiohttp.ClientResponse, url: URL) -> URL | None:
    """The validated next URL if ``response`` is a redirect, else None."""
    location = response.headers.get("Location")
    if response.status not in _REDIRECT_STATUSES or not location:
        return None
    try:
        reference = URL(location)
        target = url.join(reference)
    except (ValueError, TypeError) as exc:
        raise BadUrl(f"malformed redirect location {location!r}", url=str(url)) from exc
    if _AUTHORITY_RE.match(location) and not reference.raw_host:
        # yarl joins "http://" (empty authority) as if it were relative; browsers refuse it.
        raise BadUrl(f"redirect location {location!r} has no host", url=str(url))
    return _checked_url(target, location)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` body bytes; return them and whether more were available."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _decode(body: bytes, charset: str | None) -> str:
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            pass  # unknown charset label: fall back to UTF-8
        else:
            return body.decode(charset, errors="replace")
    return body.decode("utf-8", errors="replace")


def _translate_error(exc: BaseException, url: URL) -> FetchError:
    """Map an aiohttp/OS exception to the FetchError hierarchy. The only such place."""
    where = str(url)
    error: FetchError
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        error = DnsFailed(f"cannot resolve host: {exc}", url=where)
    elif isinstance(exc, aiohttp.ClientSSLError):
        error = TlsFailed(f"TLS handshake failed: {exc}", url=where)
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        # A connect (or handshake) timeout is a connection failure: try another scheme.
        error = ConnectFailed(f"connect timed out: {exc}", url=where)
    elif isinstance(exc, TimeoutError):
        error = FetchTimeout("fetch timed out", url=where)
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        error = BadUrl(f"invalid URL: {exc}", url=where)
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        error = ConnectFailed(f"connection failed: {exc}", url=where)
    else:
        error = BadResponse(f"bad response: {exc}", url=where)
    return error
