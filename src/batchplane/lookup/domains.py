"""Normalise user-supplied domains (or URLs) to one canonical, registrable host name.

``normalise_domain`` accepts what people paste: bare names, names with a trailing dot,
``www.``-prefixed names, full ``http(s)`` URLs with credentials, ports, paths, queries and
fragments, and Unicode (IDN) names. It returns the lower-case ASCII (IDNA/punycode) host
name, or raises :class:`InvalidDomain`.

The public-suffix check uses the Public Suffix List snapshot bundled with ``tldextract``;
it never fetches the list over the network and never writes a cache.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TYPE_CHECKING

import idna

if TYPE_CHECKING:
    import tldextract

__all__ = ["InvalidDomain", "normalise_domain"]

_MAX_NAME_LENGTH = 253
_MAX_LABEL_LENGTH = 63
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# One LDH label as it must look after IDNA encoding (RFC 1123, RFC 5890).
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# A last label that is all digits or a 0x-hex number makes the WHATWG URL parser treat
# the whole host as an IPv4 address ("127.1", "0x7f.1"), so it can never be a name.
_NUMERIC_LABEL_RE = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


class InvalidDomain(ValueError):
    """The input is not a usable public domain name.

    ``code`` is the machine-readable error code ("invalid_domain"); the message says why.
    """

    code = "invalid_domain"

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"invalid domain {raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


# Clients send the same domains again and again (lists, re-checks, retries), and
# normalising one (IDNA mapping, the suffix list) is most of intake's per-item CPU.
# Invalid input raises and is not cached. 8,192 names take about 2 MB.
@functools.lru_cache(maxsize=8_192)
def normalise_domain(raw: str, extra_suffixes: frozenset[str] = frozenset()) -> str:
    """Return the canonical ASCII host name for ``raw`` (a domain name or http(s) URL).

    Scheme, userinfo, port, path, query, fragment and a trailing dot are stripped; the
    name is lower-cased and IDNA-encoded with UTS #46 mapping (``Bücher.de`` ->
    ``xn--bcher-kva.de``). A leading ``www.`` is kept.

    ``extra_suffixes`` are suffixes to accept in addition to the Public Suffix List,
    e.g. ``frozenset({"test"})`` for the reserved RFC 2606/6761 names used in testing.

    Raises :class:`InvalidDomain` for empty input, IP address literals, single-label
    names, over-long labels or names, invalid characters, and names that are not below
    a known public suffix (a bare suffix such as ``co.uk`` is rejected too).
    """
    host = _extract_host(raw)
    _reject_ip_literal(raw, host)
    ascii_host = _idna_encode(raw, host)
    _check_syntax(raw, ascii_host)
    _check_suffix(raw, ascii_host, extra_suffixes)
    return ascii_host


def _extract_host(raw: str) -> str:
    """Cut the host out of a bare name or URL, without validating it yet."""
    text = raw.strip()
    if not text:
        raise InvalidDomain(raw, "empty")
    match = _SCHEME_RE.match(text)
    if match:
        if match.group(1).lower() not in _ALLOWED_SCHEMES:
            raise InvalidDomain(raw, f"unsupported URL scheme {match.group(1)!r}")
        text = text[match.end() :]
    elif text.startswith("//"):
        text = text[2:]  # scheme-relative URL
    # Authority ends at the first path, query or fragment delimiter; a backslash counts
    # as a path separator, as in browsers (WHATWG URL), so "a.com\@b.com" means a.com.
    authority = re.split(r"[/?#\\]", text, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    host = _strip_port(raw, host)
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidDomain(raw, "no host name")
    return host


def _strip_port(raw: str, hostport: str) -> str:
    """Remove a ``:port`` suffix; bracketed or bare IPv6 literals are rejected here."""
    if hostport.startswith("["):
        raise InvalidDomain(raw, "IP address literals are not domains")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return hostport
    if ":" in host:
        # More than one colon and no brackets: a bare IPv6 address such as "::1".
        raise InvalidDomain(raw, "IP address literals are not domains")
    if port and not port.isdigit():
        raise InvalidDomain(raw, f"invalid port {port!r}")
    return host


def _reject_ip_literal(raw: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    raise InvalidDomain(raw, "IP address literals are not domains")


def _idna_encode(raw: str, host: str) -> str:
    try:
        encoded = idna.encode(host, uts46=True)
    except idna.IDNAError as exc:
        # IDNAError covers bad code points, empty labels, leading/trailing hyphens and
        # the library's own length limits; its message names the offending part.
        raise InvalidDomain(raw, str(exc)) from exc
    return encoded.decode("ascii").lower()


def _check_syntax(raw: str, name: str) -> None:
    # UTS #46 mapping can turn full-width digits into "127.0.0.1", so check IPs again.
    _reject_ip_literal(raw, name)
    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidDomain(raw, f"name longer than {_MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidDomain(raw, "single-label names are not public domains")
    for label in labels:
        if not label:
            raise InvalidDomain(raw, "empty label")
        if len(label) > _MAX_LABEL_LENGTH:
            raise InvalidDomain(raw, f"label longer than {_MAX_LABEL_LENGTH} characters")
        if not _LABEL_RE.match(label):
            raise InvalidDomain(raw, f"invalid label {label!r}")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        raise InvalidDomain(raw, "numeric top-level label (looks like an IPv4 address)")


def _check_suffix(raw: str, name: str, extra_suffixes: frozenset[str]) -> None:
    parts = _extractor().extract_str(name)
    if parts.suffix and parts.domain:
        return
    for suffix in _normalise_suffixes(extra_suffixes):
        if name.endswith("." + suffix):
            return
    if parts.suffix:
        raise InvalidDomain(raw, f"{name!r} is a public suffix, not a domain below one")
    raise InvalidDomain(raw, "not under a known public suffix")


@functools.lru_cache(maxsize=32)
def _normalise_suffixes(suffixes: frozenset[str]) -> tuple[str, ...]:
    """Lower-case, dot-trim and IDNA-encode operator-supplied suffixes (cached)."""
    cleaned = (s.strip().strip(".") for s in suffixes)
    return tuple(idna.encode(s, uts46=True).decode("ascii") for s in cleaned if s)


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    """Build the suffix matcher once, on first use, from the bundled PSL snapshot.

    ``suffix_list_urls=()`` means no download is ever attempted (an explicit empty tuple
    also overrides ``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS``), and ``cache_dir=None``
    disables the disk cache, so tldextract falls straight back to its packaged snapshot.
    """
    # Imported here, not at module import: it pulls in requests and reads env/cache paths.
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
