"""Tests for batchplane.lookup.domains.normalise_domain."""

from __future__ import annotations

import socket

import pytest

from batchplane.lookup import domains
from batchplane.lookup.domains import InvalidDomain, normalise_domain

# 3 x 63 + 57 + "com" + 4 dots = 253 characters: the longest name allowed.
_LONGEST = ".".join(["a" * 63] * 3 + ["b" * 57, "com"])

VALID = [
    ("example.com", "example.com"),
    ("  example.com  ", "example.com"),
    ("https://foo.bar/", "foo.bar"),
    ("HTTPS://Foo.Bar:8443/x?y#z", "foo.bar"),
    ("http://foo.bar", "foo.bar"),
    ("foo.bar.", "foo.bar"),
    ("https://foo.bar./path", "foo.bar"),
    ("user:pw@foo.bar", "foo.bar"),
    ("https://user:pw@foo.bar:99/p", "foo.bar"),
    ("https://a@b@foo.bar/", "foo.bar"),
    ("foo.bar:8080", "foo.bar"),
    ("foo.bar/some/path?q=1", "foo.bar"),
    ("foo.bar?q=1", "foo.bar"),
    ("foo.bar#frag", "foo.bar"),
    ("//foo.bar/x", "foo.bar"),
    ("https://good.com\\@evil.com/", "good.com"),
    ("www.Example.COM", "www.example.com"),
    ("https://www.example.com/", "www.example.com"),
    ("sub.domain.example.co.uk", "sub.domain.example.co.uk"),
    ("foo.blogspot.com", "foo.blogspot.com"),
    ("Bücher.de", "xn--bcher-kva.de"),
    ("https://BÜCHER.de/über", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("faß.de", "xn--fa-hia.de"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25\uff0ecom", "example.com"),  # full-width
    ("a1-b2.io", "a1-b2.io"),
    ("123.com", "123.com"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    (_LONGEST, _LONGEST),
]

INVALID = [
    ("", "empty"),
    ("   ", "empty"),
    ("not a domain", "not allowed"),
    ("http://", "no host"),
    ("https:///path", "no host"),
    ("ftp://foo.bar/", "scheme"),
    ("1.2.3.4", "IP address"),
    ("http://1.2.3.4:80/", "IP address"),
    ("[::1]", "IP address"),
    ("http://[::1]:8080/", "IP address"),
    ("::1", "IP address"),
    ("2001:db8::1", "IP address"),
    ("\uff11\uff12\uff17.0.0.1", "IP address"),  # full-width digits
    ("127.1", "numeric"),
    ("0x7f.1", "numeric"),
    ("localhost", "single-label"),
    ("foo", "single-label"),
    ("http://foo/", "single-label"),
    ("com", "single-label"),
    ("a..b.com", "Empty Label"),
    ("-a.com", "hyphen"),
    ("a-.com", "hyphen"),
    (".foo.com", "Empty Label"),
    ("foo.com..", "Empty Label"),
    ("foo_bar.com", "not allowed"),
    ("foo!.com", "not allowed"),
    ("☃.com", "not allowed"),
    ("xn--zz.de", "A-label"),
    ("a" * 64 + ".com", "too long"),
    ("a." + _LONGEST, "too long"),
    ("foo.bar:port", "port"),
    ("foo.zz", "public suffix"),
    ("foo.test", "public suffix"),
    ("site-a.localhost", "public suffix"),
    ("example.invalid", "public suffix"),
    ("co.uk", "is a public suffix"),
]

VALID_EXTRA = [
    ("city.kawasaki.jp.", frozenset[str](), "city.kawasaki.jp"),  # PSL exception rule
    ("site-a.test", frozenset({"test"}), "site-a.test"),
    ("https://Site-A.test:8443/", frozenset({"test"}), "site-a.test"),
    ("a.b.test", frozenset({".TEST."}), "a.b.test"),
    ("x.corp.internal", frozenset({"corp.internal"}), "x.corp.internal"),
    ("example.com", frozenset({"test"}), "example.com"),
]

INVALID_EXTRA = [
    ("test", frozenset({"test"}), "single-label"),
    ("foo.example", frozenset({"test"}), "public suffix"),
    ("corp.internal", frozenset({"corp.internal"}), "public suffix"),
    ("nottest", frozenset({"test"}), "single-label"),
    ("foo.nottest", frozenset({"test"}), "public suffix"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(("raw", "fragment"), INVALID)
def test_invalid(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidDomain) as info:
        normalise_domain(raw)
    assert fragment.lower() in str(info.value).lower()
    assert info.value.code == "invalid_domain"
    assert isinstance(info.value, ValueError)
    assert info.value.raw == raw


@pytest.mark.parametrize(("raw", "extra", "expected"), VALID_EXTRA)
def test_valid_with_extra_suffixes(raw: str, extra: frozenset[str], expected: str) -> None:
    assert normalise_domain(raw, extra_suffixes=extra) == expected


@pytest.mark.parametrize(("raw", "extra", "fragment"), INVALID_EXTRA)
def test_invalid_with_extra_suffixes(raw: str, extra: frozenset[str], fragment: str) -> None:
    with pytest.raises(InvalidDomain, match=fragment):
        normalise_domain(raw, extra_suffixes=extra)


def test_message_names_input() -> None:
    with pytest.raises(InvalidDomain, match=r"invalid domain 'foo': single-label"):
        normalise_domain("foo")


def test_suffix_list_is_built_lazily_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled snapshot is used: building the extractor opens no socket."""

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("normalise_domain tried to use the network")

    domains._extractor.cache_clear()
    monkeypatch.setenv("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "https://publicsuffix.org/x")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    try:
        assert normalise_domain("news.bbc.co.uk") == "news.bbc.co.uk"
        extractor = domains._extractor()
        assert extractor.suffix_list_urls == ()
        assert extractor is domains._extractor()
    finally:
        domains._extractor.cache_clear()
