"""Tests for batchplane.lookup.fetch against real aiohttp servers on 127.0.0.1.

Nothing here leaves the machine: host names reach the test servers through
``FetchSettings.host_overrides`` (or /etc/hosts for ``localhost``), and the port hooks
point ``https://host/`` and ``http://host/`` at the servers' random ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from batchplane.lookup.fetch import (
    AddressPolicy,
    BadResponse,
    BadUrl,
    BlockedAddress,
    ConnectFailed,
    DnsFailed,
    Fetcher,
    FetchError,
    FetchSettings,
    FetchTimeout,
    GuardedResolver,
    TlsFailed,
    TooManyRedirects,
)

LOOPBACK_ONLY = ("127.0.0.1/32",)
HOST = "site-a.test"
BIG_BODY = b"x" * 3_000_000


# ------------------------------------------------------------------------ servers


@dataclasses.dataclass
class Server:
    port: int
    hits: Counter[str]
    release: asyncio.Event
    second_loopback: bool  # also listening on 127.0.0.2:port


def _build_app(hits: Counter[str], release: asyncio.Event) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count_hits(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] += 1
        response: web.StreamResponse = await handler(request)
        return response

    @routes.get("/")
    async def home(_: web.Request) -> web.Response:
        return web.Response(text="home over http")

    @routes.get("/plain")
    async def plain(_: web.Request) -> web.Response:
        response = web.Response(text="héllo wörld", content_type="text/html", charset="utf-8")
        response.headers["X-Test"] = "yes"
        response.headers.add("X-Multi", "a")
        response.headers.add("X-Multi", "b")
        response.set_cookie("session", "abc", httponly=True)
        response.set_cookie("theme", "dark")
        return response

    @routes.get("/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(dict(request.headers))

    @routes.get("/redirect/{n}")
    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        location = f"/redirect/{n - 1}" if n > 0 else "../plain"  # relative forms
        return web.Response(status=302, headers={"Location": location})

    @routes.get("/loop")
    async def loop(_: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/loop"})

    @routes.get("/to")
    async def to(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["location"]})

    @routes.get("/big")
    async def big(_: web.Request) -> web.Response:
        return web.Response(body=BIG_BODY)

    @routes.get("/bytes/{n}")
    async def exact(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * int(request.match_info["n"]))

    @routes.get("/charset")
    async def charset(request: web.Request) -> web.Response:
        body = bytes.fromhex(request.query["hex"])
        return web.Response(body=body, headers={"Content-Type": request.query["ct"]})

    @routes.get("/slow")
    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    @routes.get("/pause")
    async def pause(_: web.Request) -> web.Response:
        await asyncio.sleep(0.4)
        return web.Response(text="after a pause")

    @routes.get("/slow-body")
    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"partial")
        await release.wait()
        return response

    app = web.Application(middlewares=[count_hits])
    app.add_routes(routes)
    return app


def _listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    hits: Counter[str] = Counter()
    release = asyncio.Event()
    runner = web.AppRunner(_build_app(hits, release), shutdown_timeout=1.0)
    await runner.setup()
    sock = _listening_socket()
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    second_loopback = True
    try:
        await web.SockSite(runner, _listening_socket("127.0.0.2", port)).start()
    except OSError:
        second_loopback = False
    yield Server(port=port, hits=hits, release=release, second_loopback=second_loopback)
    release.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A port that is bound but not listening, so connecting to it is refused."""
    sock = _listening_socket()
    yield sock.getsockname()[1]
    sock.close()


def _settings(server: Server, closed_port: int, **changes: Any) -> FetchSettings:
    base = FetchSettings(
        timeout_s=3.0,
        connect_timeout_s=1.0,
        allow_networks=LOOPBACK_ONLY,
        https_port=closed_port,
        http_port=server.port,
        host_overrides={HOST: "127.0.0.1"},
    )
    return dataclasses.replace(base, **changes)


@contextlib.asynccontextmanager
async def _fetcher(settings: FetchSettings) -> AsyncIterator[Fetcher]:
    async with Fetcher(settings) as fetcher:
        yield fetcher


# ------------------------------------------------------------------ plain fetches


async def test_plain_fetch(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(f"http://{HOST}/plain")
    assert result.url == f"http://{HOST}/plain"
    assert result.status == 200
    assert result.headers["x-test"] == "yes"
    assert result.headers.getall("X-Multi") == ["a", "b"]
    assert result.headers["Content-Type"] == "text/html; charset=utf-8"
    assert result.cookies == {"session": "abc", "theme": "dark"}
    assert result.text == "héllo wörld"
    assert result.body == "héllo wörld".encode()
    assert not result.truncated
    assert result.redirects == 0


async def test_request_headers_and_no_url_credentials(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(f"http://user:secret@{HOST}/echo#fragment")
    sent = {k.lower(): v for k, v in json.loads(result.text).items()}
    assert sent["host"] == HOST  # the URL's host, not the overridden test port
    assert sent["user-agent"] == "batchplane-lookup/1.0"
    assert "authorization" not in sent
    assert result.url == f"http://{HOST}/echo"


async def test_explicit_port_is_not_overridden(server: Server, closed_port: int) -> None:
    settings = _settings(server, closed_port, http_port=closed_port)
    async with _fetcher(settings) as fetcher:
        result = await fetcher.fetch(f"http://127.0.0.1:{server.port}/plain")
        with pytest.raises(ConnectFailed):
            await fetcher.fetch(f"http://{HOST}/plain")
    assert result.status == 200
    assert result.url == f"http://127.0.0.1:{server.port}/plain"


async def test_localhost_answer_is_filtered_not_rejected(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port, host_overrides={})) as fetcher:
        result = await fetcher.fetch(f"http://localhost:{server.port}/plain")
    assert result.status == 200


# ------------------------------------------------------------ home page fallback


async def test_home_page_falls_back_to_http(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch_home_page(HOST)
    assert result.url == f"http://{HOST}/"
    assert result.text == "home over http"


async def test_home_page_blocked_is_not_retried_over_http(server: Server, closed_port: int) -> None:
    before = server.hits["/"]
    async with _fetcher(_settings(server, closed_port, allow_networks=())) as fetcher:
        with pytest.raises(BlockedAddress) as info:
            await fetcher.fetch_home_page(HOST)
    assert info.value.__context__ is None  # not raised while handling an https failure
    assert info.value.url == f"https://{HOST}/"
    assert server.hits["/"] == before


async def test_home_page_fails_when_both_schemes_fail(server: Server, closed_port: int) -> None:
    settings = _settings(server, closed_port, http_port=closed_port)
    async with _fetcher(settings) as fetcher:
        with pytest.raises(ConnectFailed) as info:
            await fetcher.fetch_home_page(HOST)
    assert info.value.url == f"http://{HOST}/"
    assert isinstance(info.value.__context__, ConnectFailed)


async def test_home_page_rejects_bad_domain(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        for domain in ("", "bad domain", "a/b"):
            with pytest.raises(BadUrl):
                await fetcher.fetch_home_page(domain)


# ---------------------------------------------------------------------- redirects


async def test_redirect_chain_is_followed_and_counted(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(f"http://{HOST}/redirect/3")
    assert result.redirects == 4  # 3 -> 2 -> 1 -> 0 -> ../plain
    assert result.url == f"http://{HOST}/plain"
    assert result.cookies == {"session": "abc", "theme": "dark"}


async def test_redirect_limit_is_exact(server: Server, closed_port: int) -> None:
    settings = _settings(server, closed_port, max_redirects=4)
    async with _fetcher(settings) as fetcher:
        assert (await fetcher.fetch(f"http://{HOST}/redirect/3")).redirects == 4
        with pytest.raises(TooManyRedirects):
            await fetcher.fetch(f"http://{HOST}/redirect/4")


async def test_redirect_loop(server: Server, closed_port: int) -> None:
    before = server.hits["/loop"]
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        with pytest.raises(TooManyRedirects) as info:
            await fetcher.fetch(f"http://{HOST}/loop")
    assert info.value.code == "too_many_redirects"
    assert server.hits["/loop"] - before == 6  # the first request plus max_redirects=5


async def test_absolute_redirect_to_host_name(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(
            f"http://127.0.0.1:{server.port}/to?location=http://{HOST}/plain&status=308"
        )
    assert result.url == f"http://{HOST}/plain"
    assert result.redirects == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:169.254.169.254]/",
        "http://internal.test/",  # host override to 10.1.2.3: caught by the resolver
    ],
)
async def test_redirect_to_internal_address_is_blocked(
    server: Server, closed_port: int, location: str
) -> None:
    settings = _settings(
        server, closed_port, host_overrides={HOST: "127.0.0.1", "internal.test": "10.1.2.3"}
    )
    started = time.monotonic()
    async with _fetcher(settings) as fetcher:
        with pytest.raises(BlockedAddress) as info:
            await fetcher.fetch(f"http://{HOST}/to?location={location}")
    assert time.monotonic() - started < 1.0  # refused, not attempted and timed out
    assert not info.value.retryable
    assert info.value.url == str(URL(location))  # the refused hop, not the first URL


async def test_redirect_to_other_loopback_address_is_blocked(
    server: Server, closed_port: int
) -> None:
    url = f"http://{HOST}/to?location=http://127.0.0.2:{server.port}/plain"
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        with pytest.raises(BlockedAddress):
            await fetcher.fetch(url)
    if not server.second_loopback:
        pytest.skip("cannot listen on 127.0.0.2 here; the allowed case is not checked")
    # Control: the same redirect works once the operator allows the network.
    async with _fetcher(_settings(server, closed_port, allow_networks=("127.0.0.0/8",))) as f:
        assert (await f.fetch(url)).url == f"http://127.0.0.2:{server.port}/plain"


@pytest.mark.parametrize(
    "location", ["ftp://example.com/", "javascript:alert(1)", "http://", "http://[::1/"]
)
async def test_redirect_to_bad_url(server: Server, closed_port: int, location: str) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        with pytest.raises(BadUrl):
            await fetcher.fetch(f"http://{HOST}/to?location={location}")


async def test_redirect_without_location_is_final(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(f"http://{HOST}/to?location=&status=302")
    assert (result.status, result.redirects) == (302, 0)


# --------------------------------------------------------------- address policy


async def test_loopback_blocked_by_default(server: Server, closed_port: int) -> None:
    before = sum(server.hits.values())
    settings = _settings(server, closed_port, allow_networks=(), host_overrides={HOST: "127.0.0.1"})
    async with _fetcher(settings) as fetcher:
        for url in (
            f"http://127.0.0.1:{server.port}/plain",
            f"http://{HOST}/plain",
            f"http://localhost:{server.port}/plain",
        ):
            with pytest.raises(BlockedAddress) as info:
                await fetcher.fetch(url)
            assert info.value.code == "blocked_address"
            assert info.value.url == url
    assert sum(server.hits.values()) == before


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
        "[::1]",
        "[::]",
        "[fe80::1%25lo]",
        "0.0.0.0",
        "127.0.0.1.",
        "127.1",
        "0x7f.1",
        "0x7f000001",
        "2130706433",
        "017700000001",
        "0177.0.0.1",
        "127.000.000.001",
    ],
)
async def test_unusual_loopback_forms_are_refused(
    server: Server, closed_port: int, host: str
) -> None:
    before = sum(server.hits.values())
    async with _fetcher(_settings(server, closed_port, allow_networks=())) as fetcher:
        with pytest.raises((BlockedAddress, BadUrl)) as info:
            await fetcher.fetch(f"http://{host}:{server.port}/plain")
    assert not info.value.retryable
    assert sum(server.hits.values()) == before


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("100.127.255.255", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("192.0.0.170", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::1", False),
        ("2002:7f00:1::1", False),
        ("2002:a00:1::1", False),
        ("2001::1", False),
        ("2001:db8::1", False),
        ("fc00::1", False),
        ("fd00:ec2::254", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_address_policy_default(address: str, allowed: bool) -> None:
    assert AddressPolicy().is_allowed(address) is allowed


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.5", True),
        ("::ffff:127.0.0.1", True),
        ("10.9.9.9", True),
        ("10.10.0.1", False),
        ("192.168.0.1", False),
        ("8.8.8.8", True),
    ],
)
def test_address_policy_allow_list(address: str, allowed: bool) -> None:
    policy = AddressPolicy(["127.0.0.0/8", "10.9.0.0/16"])
    assert policy.is_allowed(address) is allowed


def test_invalid_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        Fetcher(FetchSettings(allow_networks=("not-a-cidr",)))
    with pytest.raises(ValueError, match="does not appear"):
        Fetcher(FetchSettings(host_overrides={"a.test": "not-an-ip"}))


class StubResolver(AbstractResolver):
    """Answers with a scripted list of addresses per call (to mimic DNS rebinding)."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.calls = 0
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._answers[min(self.calls, len(self._answers) - 1)]
        self.calls += 1
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_guarded_resolver_filters_each_answer() -> None:
    inner = StubResolver(
        ["93.184.215.14", "127.0.0.1", "::1", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        ["10.0.0.1", "169.254.169.254"],  # the "rebound" second answer
        [],
    )
    resolver = GuardedResolver(AddressPolicy(), inner)
    first = await resolver.resolve("rebind.example", 443)
    assert [r["host"] for r in first] == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert all(r["port"] == 443 for r in first)
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.1, 169\.254\.169\.254"):
        await resolver.resolve("rebind.example", 443)
    with pytest.raises(OSError, match="no addresses"):
        await resolver.resolve("rebind.example", 443)
    await resolver.close()
    assert inner.closed


async def test_guarded_resolver_overrides_skip_dns_but_not_policy() -> None:
    inner = StubResolver(["8.8.8.8"])
    overrides = {"Pub.Test": "93.184.215.14", "priv.test": "192.168.0.10"}
    resolver = GuardedResolver(AddressPolicy(), inner, overrides)
    [answer] = await resolver.resolve("pub.test.", 80)
    assert (answer["host"], answer["port"], answer["family"]) == (
        "93.184.215.14",
        80,
        socket.AF_INET,
    )
    with pytest.raises(BlockedAddress):
        await resolver.resolve("priv.test", 80)
    assert inner.calls == 0


# --------------------------------------------------------------- body and text


async def test_body_cap_truncates(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port, max_body_bytes=100_000)) as fetcher:
        result = await fetcher.fetch(f"http://{HOST}/big")
        assert result.truncated
        assert result.body == BIG_BODY[:100_000]
        # The truncated connection is not reused: the next fetch still works.
        exact = await fetcher.fetch(f"http://{HOST}/bytes/100000")
    assert not exact.truncated
    assert len(exact.body) == 100_000


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/html; charset=iso-8859-1", "café".encode("latin-1"), "café"),
        ("text/html; charset=UTF-8", "café".encode(), "café"),
        ("text/plain; charset=utf-16", "ok ü".encode("utf-16"), "ok ü"),
        ("text/html; charset=windows-1251", "привет".encode("cp1251"), "привет"),
        ("text/html", "café".encode(), "café"),
        ("text/html", b"caf\xe9", "caf\ufffd"),
        ("text/html; charset=x-no-such-charset", b"caf\xc3\xa9", "café"),
        ("application/octet-stream", b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
async def test_charset_decoding(
    server: Server, closed_port: int, content_type: str, body: bytes, text: str
) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        result = await fetcher.fetch(
            f"http://{HOST}/charset?hex={body.hex()}&ct={content_type.replace(' ', '%20')}"
        )
    assert result.body == body
    assert result.text == text


# ------------------------------------------------------------- timeouts, errors


@pytest.mark.parametrize("path", ["/slow", "/slow-body"])
async def test_slow_server_times_out(server: Server, closed_port: int, path: str) -> None:
    async with _fetcher(_settings(server, closed_port, timeout_s=0.5)) as fetcher:
        started = time.monotonic()
        with pytest.raises(FetchTimeout) as info:
            await fetcher.fetch(f"http://{HOST}{path}")
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 1.5
    assert info.value.code == "fetch_timeout"
    assert info.value.retryable


async def test_connection_refused(server: Server, closed_port: int) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        with pytest.raises(ConnectFailed) as info:
            await fetcher.fetch(f"http://127.0.0.1:{closed_port}/")
    assert type(info.value) is ConnectFailed
    assert (info.value.code, info.value.retryable) == ("connect_failed", True)


@pytest.mark.parametrize(
    "url", ["", "not a url", "ftp://example.com/", "http://", "http:///path", "//x.test/"]
)
async def test_bad_url(server: Server, closed_port: int, url: str) -> None:
    async with _fetcher(_settings(server, closed_port)) as fetcher:
        with pytest.raises(BadUrl) as info:
            await fetcher.fetch(url)
    assert info.value.code == "invalid_url"


async def test_fetch_requires_start() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await Fetcher().fetch("http://example.com/")


def test_error_hierarchy() -> None:
    expected = {
        BadUrl: ("invalid_url", False),
        BlockedAddress: ("blocked_address", False),
        TooManyRedirects: ("too_many_redirects", False),
        FetchTimeout: ("fetch_timeout", True),
        BadResponse: ("bad_response", True),
        ConnectFailed: ("connect_failed", True),
        DnsFailed: ("dns_failed", True),
        TlsFailed: ("tls_failed", False),
    }
    for cls, (code, retryable) in expected.items():
        assert issubclass(cls, FetchError)
        assert (cls.code, cls.retryable) == (code, retryable)
    assert issubclass(DnsFailed, ConnectFailed)
    assert issubclass(TlsFailed, ConnectFailed)


# -------------------------------------------------------------------------- TLS


@dataclasses.dataclass
class TlsServer:
    port: int
    ca_file: str


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for HOST, made with the openssl CLI.

    The cryptography package is not installed here; only these TLS tests need a cert.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
async def tls_server(tls_cert: tuple[Path, Path]) -> AsyncIterator[TlsServer]:
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def home(_: web.Request) -> web.Response:
        return web.Response(status=503, text="https says unavailable")

    app = web.Application()
    app.router.add_get("/", home)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    sock = _listening_socket()
    await web.SockSite(runner, sock, ssl_context=context).start()
    yield TlsServer(port=sock.getsockname()[1], ca_file=str(cert))
    await runner.cleanup()


async def test_https_with_trusted_ca(
    server: Server, closed_port: int, tls_server: TlsServer
) -> None:
    settings = _settings(
        server, closed_port, https_port=tls_server.port, ca_file=tls_server.ca_file
    )
    async with _fetcher(settings) as fetcher:
        result = await fetcher.fetch_home_page(HOST)
    # An HTTP error status over https is a result, not a reason to try plain http.
    assert (result.url, result.status) == (f"https://{HOST}/", 503)
    assert result.text == "https says unavailable"


async def test_untrusted_certificate_falls_back_to_http(
    server: Server, closed_port: int, tls_server: TlsServer
) -> None:
    settings = _settings(server, closed_port, https_port=tls_server.port)
    async with _fetcher(settings) as fetcher:
        with pytest.raises(TlsFailed) as info:
            await fetcher.fetch(f"https://{HOST}/")
        assert not info.value.retryable
        result = await fetcher.fetch_home_page(HOST)
    assert (result.url, result.text) == (f"http://{HOST}/", "home over http")


async def test_the_deadline_starts_once_a_connection_slot_is_free(
    server: Server, closed_port: int
) -> None:
    """Waiting for one of `max_concurrency` slots is not the site's time: four fetches of
    a 0.4 s page through one slot all succeed within a 1 s deadline each."""
    settings = _settings(server, closed_port, max_concurrency=1, timeout_s=1.0)
    async with _fetcher(settings) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(f"http://{HOST}/pause") for _ in range(4)))
    assert [r.status for r in results] == [200] * 4
