"""Extraction of enrichment fields from one fetched HTML page.

`extract` is pure and synchronous: the processor fetches the page (a company's home page
or a person's profile page) and hands over its final URL and HTML. Every requested field
maps to its value, or to `None` when the page has nothing for it.

Sources, in the order they are consulted:

* the DOM (selectolax/lexbor): `mailto:`/`tel:` links, `<a href>` social links, `<meta>`
  descriptions, paragraphs and the *visible text*, i.e. the body without `script`,
  `style`, `noscript` and `template` contents;
* schema.org structured data (extruct): JSON-LD blocks one by one, microdata, and RDFa
  when the page declares schema.org RDFa. A block that fails to parse is skipped (logged
  at debug), never raised: one broken JSON-LD block must not cost the page's other data.

Decisions worth knowing:

* Only the first `MAX_HTML_CHARS` characters of HTML are parsed, so CPU per page is bounded.
* Emails are lower-cased and syntax-checked. Text addresses whose "TLD" is a file
  extension (`logo@2x.png`) and addresses at domains reserved by RFC 2606/6761 for
  documentation (`example.com|net|org`, `*.example`, `*.invalid`, `*.localhost`) are
  dropped: those can never receive mail, so the filter loses nothing real. `.test` is
  reserved too but kept, because fixtures and staging sites use it on purpose.
* National phone numbers are read in the region given by `PageInput.country_hint`, else
  the schema.org `addressCountry`, else the host's ccTLD (vanity ccTLDs such as `.io`
  or `.co` excluded), else `"US"`. Numbers written with `+` parse in any region; only
  valid numbers are kept.
* Social links from schema.org `sameAs` come before `<a href>` links (structured data is
  the site's own claim about itself); the first profile URL per network wins.
* RDFa runs only on pages that use schema.org RDFa: pyRdfa costs ~60 ms on a 50 KB page
  where everything else together costs a few ms, and almost every page carries
  OpenGraph `property=` attributes that would otherwise trigger it for nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

from batchplane.core.deferred import deferred_import

# Only enrichment (and radar profile checks) read structured data and phone numbers:
# deferred so other processors never load extruct's stack (~37 MB) or phonenumbers.
if TYPE_CHECKING:
    import extruct
    import phonenumbers
    from extruct import jsonld as extruct_jsonld
    from extruct import utils as extruct_utils
else:
    extruct = deferred_import("extruct")
    extruct_jsonld = deferred_import("extruct.jsonld")
    extruct_utils = deferred_import("extruct.utils")
    phonenumbers = deferred_import("phonenumbers")

# What async callers await `deferred.loaded(*DEFERRED)` for before extracting.
DEFERRED: Final = (extruct, extruct_jsonld, extruct_utils, phonenumbers)

__all__ = ["FIELDS", "MAX_HTML_CHARS", "SUMMARY_MAX_CHARS", "PageInput", "extract"]

logger = logging.getLogger(__name__)

FIELDS: Final = ("emails", "phones", "summary", "socials", "address")
"""Fields `extract` can compute ("technologies" is detected elsewhere)."""
MAX_HTML_CHARS: Final = 1024 * 1024
"""Only this much of a page's HTML is parsed."""
SUMMARY_MAX_CHARS: Final = 500
"""Longest summary returned; longer text is cut on a word boundary."""

Node = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Input and entry point
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageInput:
    """One fetched page.

    `url` is the final URL after redirects (it resolves relative links and gives the
    ccTLD). `country_hint` is an ISO 3166 alpha-2 code used to read national phone
    numbers; it overrides what the page itself suggests.
    """

    url: str
    html: str
    country_hint: str | None = None


def extract(page: PageInput, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """Extract the requested `fields` (default: all of `FIELDS`) from `page`.

    Returns one entry per requested field, in request order:

    * `emails`: sorted list of distinct lower-cased addresses;
    * `phones`: E.164 strings, first-seen order (tel: links, schema.org, visible text);
    * `summary`: one whitespace-collapsed string of at most `SUMMARY_MAX_CHARS`;
    * `socials`: network name (`linkedin`, `twitter`, ...) to profile URL;
    * `address`: schema.org PostalAddress keys that are present.

    A field the page has nothing for is `None`. Raises `ValueError` for an unknown field
    name; never raises because of the page's content.
    """
    wanted = list(dict.fromkeys(FIELDS if fields is None else fields))
    unknown = [name for name in wanted if name not in _EXTRACTORS]
    if unknown:
        raise ValueError(f"unknown enrichment fields: {unknown}; known: {list(FIELDS)}")
    doc = _Document(page)
    return {name: _EXTRACTORS[name](doc) for name in wanted}


# ---------------------------------------------------------------------------------------
# The parsed page; every source is computed once, on first use
# ---------------------------------------------------------------------------------------

# Their contents are never shown, so emails or phones inside them are not contacts.
INVISIBLE_TAGS: Final = ["script", "style", "noscript", "template"]
# Pages that declare schema.org RDFa; only those are worth pyRdfa's cost.
SCHEMA_RDFA_SELECTOR: Final = (
    '[vocab*="schema.org"], [prefix*="schema.org"], [typeof*="schema"], [property^="schema:"]'
)
_JSONLD_XPATH: Final = '//script[@type="application/ld+json"]'


class _Document:
    """A page parsed once, with lazily computed views of it."""

    def __init__(self, page: PageInput) -> None:
        self.url = page.url
        self.country_hint = page.country_hint
        self.html = page.html[:MAX_HTML_CHARS]
        self.dom = LexborHTMLParser(self.html)
        # Nothing this class reads from the DOM lives inside these (JSON-LD is read by
        # extruct from its own tree), so they are dropped once rather than skipped per use.
        self.dom.strip_tags(INVISIBLE_TAGS, recursive=True)
        # A <br> separates words; without this, paragraph text would glue them together.
        for br in self.dom.css("br"):
            br.replace_with(" ")

    @cached_property
    def visible_text(self) -> str:
        """Body text; text nodes are joined by spaces so cells and blocks never merge."""
        body = self.dom.body
        return "" if body is None else body.text(separator=" ")

    @cached_property
    def hrefs(self) -> list[str]:
        """Every `<a href>`, stripped, in document order."""
        hrefs = []
        for anchor in self.dom.css("a[href]"):
            href = anchor.attributes.get("href")
            if href and href.strip():
                hrefs.append(href.strip())
        return hrefs

    @cached_property
    def meta(self) -> dict[str, str]:
        """`<meta>` content by lower-cased `name` or `property`; the first non-empty wins."""
        meta: dict[str, str] = {}
        for tag in self.dom.css("meta[content]"):
            attrs = tag.attributes
            key = (attrs.get("name") or attrs.get("property") or "").strip().lower()
            content = _collapse(attrs.get("content") or "")
            if key and content and key not in meta:
                meta[key] = content
        return meta

    @cached_property
    def nodes(self) -> list[Node]:
        """Every schema.org node (nested ones too) with keys reduced to local names."""
        items = structured_items(self.html, self.url, self.dom)
        return list(_flatten(items))


def structured_items(html: str, url: str, dom: LexborHTMLParser) -> list[Any]:
    """JSON-LD documents, microdata items and (schema.org only) RDFa nodes, in that order.

    `dom` is the page already parsed with selectolax; it only tells whether the page
    uses schema.org RDFa, which is worth pyRdfa's cost only then. Shared with the
    scrape extractor.
    """
    use_rdfa = dom.css_first(SCHEMA_RDFA_SELECTOR) is not None
    parse = extruct_utils.parse_xmldom_html if use_rdfa else extruct_utils.parse_html
    try:
        # Bytes, because lxml refuses a str that starts with an XML encoding declaration.
        tree = parse(html.encode("utf-8", "replace"), encoding="UTF-8")
    except Exception:  # lxml rejects some inputs (e.g. only whitespace)
        logger.debug("structured data: HTML not parsable for %s", url, exc_info=True)
        return []
    items: list[Any] = jsonld_items(tree, url)
    items.extend(extruct_items(tree, url, "microdata"))
    if use_rdfa:
        items.extend(rdfa_nodes(extruct_items(tree, url, "rdfa")))
    return items


def jsonld_items(tree: Any, url: str) -> list[Any]:
    """JSON-LD, block by block: extruct gives up on the whole page at the first bad one."""
    items: list[Any] = []
    extractor = extruct_jsonld.JsonLdExtractor()
    for script in tree.xpath(_JSONLD_XPATH):
        try:
            items.extend(extractor.extract_items(script, base_url=url))
        except Exception:  # third-party parsers raise anything on bad data
            logger.debug("structured data: bad JSON-LD block on %s", url, exc_info=True)
    return items


def extruct_items(tree: Any, url: str, syntax: str) -> list[Any]:
    """One extruct syntax on the parsed tree; its failure costs only that syntax."""
    try:
        data = extruct.extract(tree, base_url=url, syntaxes=[syntax], uniform=True)
    except Exception:  # third-party parsers raise anything on bad data
        logger.debug("structured data: %s failed on %s", syntax, url, exc_info=True)
        return []
    items = data.get(syntax)
    return items if isinstance(items, list) else []


# ---------------------------------------------------------------------------------------
# schema.org normalisation
# ---------------------------------------------------------------------------------------

_MAX_DEPTH: Final = 16
_SCHEMA_IRI: Final = re.compile(r"^https?://schema\.org/", re.IGNORECASE)


def local_name(key: str) -> str:
    """`http://schema.org/email`, `schema:email` and `email` all become `email`."""
    if key.startswith("@"):
        return key
    return re.split(r"[/#:]", key)[-1]


def _flatten(value: Any, depth: int = 0) -> Iterator[Node]:
    """Every dict in `value`, parents before children, keys reduced to local names."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item, depth + 1)
    elif isinstance(value, dict):
        yield {local_name(str(key)): item for key, item in value.items()}
        for item in value.values():
            if isinstance(item, dict | list):
                yield from _flatten(item, depth + 1)


def rdfa_nodes(graph: list[Any]) -> list[Node]:
    """extruct's RDFa graph as plain nodes: schema.org properties only, values as strings.

    References (`{"@id": ...}`) stay strings: referenced nodes are in the graph anyway,
    and `sameAs` values are exactly such references.
    """
    nodes: list[Node] = []
    for subject in graph:
        if not isinstance(subject, dict):
            continue
        types = [_SCHEMA_IRI.sub("", t) for t in subject.get("@type", []) if isinstance(t, str)]
        node: Node = {"@type": [t for t in types if "/" not in t]}
        for key, values in subject.items():
            if isinstance(key, str) and _SCHEMA_IRI.match(key) and isinstance(values, list):
                node[_SCHEMA_IRI.sub("", key)] = [_rdfa_value(v) for v in values]
        nodes.append(node)
    return nodes


def _rdfa_value(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("@value", value.get("@id"))
    return value


def schema_types(node: Node) -> set[str]:
    raw = node.get("@type")
    values = raw if isinstance(raw, list) else [raw]
    return {local_name(t) for t in values if isinstance(t, str)}


def _texts(value: Any) -> Iterator[str]:
    """Every non-empty string in a property value (strings, numbers, lists, named nodes)."""
    if isinstance(value, str):
        text = _collapse(value)
        if text:
            yield text
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        # A nested node such as {"@type": "Country", "name": "US"} stands for its name.
        for key in ("name", "@value"):
            if key in value:
                yield from _texts(value[key])
                return


def _first_text(value: Any) -> str | None:
    return next(_texts(value), None)


def _collapse(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# emails
# ---------------------------------------------------------------------------------------

# ASCII-only and deliberately simpler than RFC 5322: quoted local parts and comments do
# not occur in published contact addresses, while this shape rejects most junk.
_EMAIL: Final = re.compile(
    r"(?<![\w.%+-])"
    r"(?P<local>[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59}))"
    r"(?![\w-])"
)
_MAX_EMAIL_CHARS: Final = 254
# Asset names such as `logo@2x.png` look like addresses; no real TLD is a file type.
_FILE_EXTENSIONS: Final = frozenset(
    {"png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "ico", "bmp", "tif", "tiff", "css", "js"}
    | {"mjs", "json", "map", "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3", "pdf"}
)
# RFC 2606 / 6761 names that can never receive mail.
_RESERVED_DOMAINS: Final = frozenset({"example.com", "example.net", "example.org"})
_RESERVED_TLDS: Final = frozenset({"example", "invalid", "localhost"})


def _emails(doc: _Document) -> list[str] | None:
    found: set[str] = set()
    for href in doc.hrefs:
        if href[:7].lower() == "mailto:":
            found.update(_addresses_in_value(href))
    for node in doc.nodes:
        for value in _texts(node.get("email")):
            found.update(_addresses_in_value(value))
    found.update(_addresses_in_text(doc.visible_text))
    return sorted(found) or None


def _addresses_in_value(value: str) -> Iterator[str]:
    """Addresses in a `mailto:` URL or a schema.org `email` (which may be one too)."""
    if value[:7].lower() == "mailto:":
        value = value[7:]
    value = unquote(value.split("?", 1)[0])
    for part in re.split(r"[,;\s]+", value):
        address = _valid_address(part)
        if address:
            yield address


def _addresses_in_text(text: str) -> Iterator[str]:
    # Addresses contain no whitespace, so only the few tokens with an "@" are searched;
    # running the regex over the whole text would try it at every character.
    for token in text.split():
        if "@" in token:
            for match in _EMAIL.finditer(token):
                address = _valid_address(match.group(0))
                if address:
                    yield address


def _valid_address(candidate: str) -> str | None:
    """The lower-cased address, or `None` when it is malformed or a known non-address."""
    address = candidate.strip().lower()
    match = _EMAIL.fullmatch(address)
    if match is None or len(address) > _MAX_EMAIL_CHARS or ".." in match["local"]:
        return None
    domain = match["domain"]
    tld = domain.rsplit(".", 1)[-1]
    if tld in _FILE_EXTENSIONS or tld in _RESERVED_TLDS:
        return None
    if any(domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS):
        return None
    return address


# ---------------------------------------------------------------------------------------
# phones
# ---------------------------------------------------------------------------------------

_DEFAULT_REGION: Final = "US"
# ccTLDs mostly sold as generic names; their numbers are rarely from that country.
_VANITY_CCTLDS: Final = frozenset(
    {"ai", "am", "cc", "co", "fm", "gg", "io", "ly", "me", "nu", "sh", "so", "to", "tv", "ws"}
)
# A digit run with separators: wider than any phone number's digits and punctuation.
_DIGIT_RUN: Final = re.compile(r"[+(]?\d[\d\s().\-/\u2010-\u2015\u2212]{3,}\d")
_WINDOW_MARGIN: Final = 32
# Codes people write that ISO 3166 spells differently.
_REGION_ALIASES: Final = {"UK": "GB"}


def _phones(doc: _Document) -> list[str] | None:
    region = _phone_region(doc)
    seen: dict[str, None] = {}  # an ordered set
    for href in doc.hrefs:
        if href[:4].lower() == "tel:":
            _add_phone(seen, unquote(href[4:]).split(";", 1)[0], region)
    for node in doc.nodes:
        for value in _texts(node.get("telephone")):
            _add_phone(seen, value.removeprefix("tel:"), region)
    for window in _digit_windows(doc.visible_text):
        for match in phonenumbers.PhoneNumberMatcher(window, region):
            if phonenumbers.is_valid_number(match.number):
                seen.setdefault(_e164(match.number))
    return list(seen) or None


def _digit_windows(text: str) -> Iterator[str]:
    """The parts of `text` around digit runs long enough to hold a phone number.

    PhoneNumberMatcher's regex costs ~0.1 ms per KB of text, and page text is mostly
    prose. Each window keeps `_WINDOW_MARGIN` characters of context either side, so the
    matcher still sees the neighbours it judges a candidate by (letters, "ext. 12").
    """
    start = end = -1
    for run in _DIGIT_RUN.finditer(text):
        lo, hi = max(0, run.start() - _WINDOW_MARGIN), run.end() + _WINDOW_MARGIN
        if lo > end >= 0:
            yield text[start:end]
            start = -1
        if start < 0:
            start = lo
        end = hi
    if start >= 0:
        yield text[start:end]


def _add_phone(seen: dict[str, None], raw: str, region: str) -> None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return
    if phonenumbers.is_valid_number(number):
        seen.setdefault(_e164(number))


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_region(doc: _Document) -> str:
    """Region for national-format numbers: hint, schema.org country, ccTLD, then US."""
    address = _address(doc) or {}
    for candidate in (doc.country_hint, address.get("addressCountry"), _cctld(doc.url)):
        region = _as_region(candidate)
        if region:
            return region
    return _DEFAULT_REGION


def _as_region(code: str | None) -> str | None:
    if not code:
        return None
    region = code.strip().upper()
    region = _REGION_ALIASES.get(region, region)
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def _cctld(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    tld = host.rstrip(".").rsplit(".", 1)[-1]
    if len(tld) != 2 or tld in _VANITY_CCTLDS:
        return None
    return tld


# ---------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------

_MIN_PARAGRAPH_CHARS: Final = 60
_DESCRIBED_TYPES: Final = frozenset(
    {
        "Organization",
        "Corporation",
        "LocalBusiness",
        "NGO",
        "OnlineBusiness",
        "OnlineStore",
        "Store",
        "ProfessionalService",
        "Person",
    }
)
_DESCRIBED_SUFFIXES: Final = ("Organization", "Business", "Store")


def _summary(doc: _Document) -> str | None:
    sources: tuple[Callable[[_Document], str | None], ...] = (
        lambda d: d.meta.get("description"),
        lambda d: d.meta.get("og:description"),
        _schema_description,
        _first_paragraph,
    )
    for source in sources:
        text = source(doc)
        if text:
            return _clip(text)
    return None


def _schema_description(doc: _Document) -> str | None:
    for node in doc.nodes:
        if describes_organization_or_person(node):
            text = _first_text(node.get("description"))
            if text:
                return text
    return None


def describes_organization_or_person(node: Node) -> bool:
    types = schema_types(node)
    if types & _DESCRIBED_TYPES or any(t.endswith(_DESCRIBED_SUFFIXES) for t in types):
        return True
    # LocalBusiness has hundreds of subtypes (Bakery, Dentist...); they carry an address,
    # which creative works (WebPage, Article, Product) never do.
    return bool(types) and "address" in node


def _first_paragraph(doc: _Document) -> str | None:
    """The first `<p>` long enough to be prose, preferring the main content."""
    for selector in ("main", "article", "body"):
        container = doc.dom.css_first(selector)
        if container is None:
            continue
        for paragraph in container.css("p"):
            text = _collapse(paragraph.text(separator=""))
            if len(text) >= _MIN_PARAGRAPH_CHARS:
                return text
    return None


def _clip(text: str) -> str:
    """`text` cut to `SUMMARY_MAX_CHARS` on a word boundary, an ellipsis marking the cut."""
    text = _collapse(text)
    if len(text) <= SUMMARY_MAX_CHARS:
        return text
    cut = text[: SUMMARY_MAX_CHARS - 1]
    space = cut.rfind(" ")
    if space > SUMMARY_MAX_CHARS // 2:  # a giant "word" (a URL) is cut mid-word instead
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


# ---------------------------------------------------------------------------------------
# socials
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Network:
    name: str
    domains: tuple[str, ...]
    # Profile paths are `/<kind>/<id>` for one of these kinds; `None`: `/<handle>`...
    kinds: frozenset[str] | None = None
    # ...where the handle is none of these (site features, posts, videos).
    reserved: frozenset[str] = frozenset()
    # `/@handle` is a profile too (TikTok, YouTube).
    at_handles: bool = False


_NETWORKS: Final = (
    _Network(
        "linkedin", ("linkedin.com",), kinds=frozenset({"company", "in", "school", "showcase"})
    ),
    _Network(
        "twitter",
        ("twitter.com", "x.com"),
        reserved=frozenset({"home", "search", "hashtag", "i", "login", "signup", "explore"}),
    ),
    _Network(
        "facebook",
        ("facebook.com", "fb.com"),
        reserved=frozenset({"dialog", "plugins", "tr", "login", "login.php"}),
    ),
    _Network(
        "instagram",
        ("instagram.com",),
        reserved=frozenset({"p", "reel", "reels", "explore", "accounts", "stories"}),
    ),
    _Network(
        "youtube", ("youtube.com",), kinds=frozenset({"channel", "c", "user"}), at_handles=True
    ),
    _Network(
        "github",
        ("github.com",),
        reserved=frozenset({"login", "features", "about", "sponsors", "marketplace"}),
    ),
    _Network("tiktok", ("tiktok.com",), kinds=frozenset(), at_handles=True),
    _Network("crunchbase", ("crunchbase.com",), kinds=frozenset({"organization", "person"})),
    _Network("pinterest", ("pinterest.com",), reserved=frozenset({"pin", "search"})),
)

_NETWORK_DOMAINS: Final = tuple(domain for network in _NETWORKS for domain in network.domains)


def _socials(doc: _Document) -> dict[str, str] | None:
    found: dict[str, str] = {}
    same_as = (url for node in doc.nodes for url in _texts(node.get("sameAs")))
    for raw in (*same_as, *doc.hrefs):
        # Most links are internal; URL parsing costs ~15 µs, a substring test far less.
        if not any(domain in raw.lower() for domain in _NETWORK_DOMAINS):
            continue
        match = _social_profile(raw, doc.url)
        if match and match[0] not in found:
            found[match[0]] = match[1]
    return found or None


def _social_profile(raw: str, base_url: str) -> tuple[str, str] | None:
    """(network, normalised URL) when `raw` links to a profile on a known network."""
    try:
        parts = urlsplit(urljoin(base_url, raw))
        host = parts.hostname or ""
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    segments = [s for s in parts.path.split("/") if s]
    network = _network_for(host)
    if network is None or not _is_profile_path(network, segments):
        return None
    return network.name, f"https://{host}/{'/'.join(segments)}"


def _network_for(host: str) -> _Network | None:
    for network in _NETWORKS:
        if any(host == d or host.endswith("." + d) for d in network.domains):
            return network
    return None


def _is_profile_path(network: _Network, segments: list[str]) -> bool:
    if not segments or any(_is_share_segment(s) for s in segments):
        return False
    first = segments[0].lower()
    if network.at_handles and first.startswith("@"):
        return len(first) > 1
    if network.kinds is not None:
        return first in network.kinds and len(segments) > 1
    return first not in network.reserved


def _is_share_segment(segment: str) -> bool:
    """`/sharer.php`, `/shareArticle`, `/sharing/...`, `/intent/tweet`: share buttons."""
    lowered = segment.lower()
    return lowered.startswith(("share", "sharing")) or lowered == "intent"


# ---------------------------------------------------------------------------------------
# address
# ---------------------------------------------------------------------------------------

_ADDRESS_KEYS: Final = (
    "streetAddress",
    "addressLocality",
    "addressRegion",
    "postalCode",
    "addressCountry",
)


def _address(doc: _Document) -> dict[str, str] | None:
    """The first schema.org PostalAddress with any of `_ADDRESS_KEYS`.

    Untyped nodes count too when they carry address keys: JSON-LD authors often write
    `"address": {"streetAddress": ...}` without `@type`.
    """
    for node in doc.nodes:
        types = schema_types(node)
        if types and "PostalAddress" not in types:
            continue
        address = {key: text for key in _ADDRESS_KEYS if (text := _first_text(node.get(key)))}
        if address and (types or len(address) > 1):
            return address
    return None


_EXTRACTORS: Final[dict[str, Callable[[_Document], Any]]] = {
    "emails": _emails,
    "phones": _phones,
    "summary": _summary,
    "socials": _socials,
    "address": _address,
}
