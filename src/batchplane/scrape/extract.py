"""Deterministic extraction of schema-shaped items from one fetched HTML page (seed 004).

`extract_items` is pure and synchronous: the processor fetches the page and hands over
its final URL and HTML together with the caller's JSON schema. This is the
`llm_mode: "structured"` path: no model is involved, only the page's own structure.

The schema describes ONE item: `{"type": "object", "properties": {...}}`. A schema of
`{"type": "array", "items": {...}}` is read as its `items` (local `$ref`s are followed).

Candidate records
-----------------
A candidate is a flat-ish record of named values. Four sources produce them; each source
is mapped onto the schema and the best-matching one wins (see "Choosing" below):

1. **Structured items**: JSON-LD (`@graph` flattened, `ItemList.itemListElement` unwrapped
   to their `item`s, `mainEntity` followed), microdata and schema.org RDFa. Nested values
   are reachable by dotted paths (`offers.price`, `brand.name`) and, with lower priority,
   by their leaf names (`price`, `priceCurrency`). Page furniture (`WebSite`, `WebPage`
   and other `*Page` types, `BreadcrumbList`, `ImageObject`, actions, `WP*` elements) is
   never an item.
2. **Repeated page structures**: rows of `<table>`s that have a header row (header cell
   text names the fields), items of `<ul>/<ol>` lists (at least 2) and "cards" (at least
   3 sibling `div/article/section/a/figure` elements with the same tag and classes;
   `<article>` needs no class). Structures inside `nav`, `header`, `footer`, `aside` and
   `form` are skipped. Each element gives: `title`/`name` (first h1-h6, else a
   `.title`/`.name`-like element, else a link whose text starts the element's text),
   `url`/`link` (first link, absolute), `image` (first `img`), `date` (first
   `<time datetime>`), fields named after `class` tokens, `itemprop`s and `data-*`
   attributes (`<span class="price">` gives `price`), `price`/`priceCurrency` from the
   first currency amount in the text, `description` (first `<p>`) and `content`/`text`
   (the text without the title).
3. **The page itself**, one record: OpenGraph and `article:`/`product:` meta tags
   (`og:title` gives `title`, `article:published_time` gives `published_time`...). For
   schemas whose properties are all strings (like the seed's `{title, content}`) it also
   gets `title` (article/main h1, `og:title`, `<title>`, any h1), `content`/`text`/`body`
   (article/main/body text without its h1, navigation and footers, whitespace-collapsed),
   `description`, `url` (`og:url`, canonical link, page URL), `date` and `author`.
4. **Site identity**: structured Organization/Person-like nodes found outside an
   `ItemList`, i.e. usually the site's publisher, which nearly every page declares.

Mapping
-------
For each schema property the record is searched, first among its own keys, then among
leaf aliases, for: the property's `x-source` keys (a string or a list, when present),
the property name exactly, the name ignoring case and separators (`publishedAt` ~
`published_at` ~ `published-at`), then synonyms (`_SYNONYM_GROUPS`: title/name/headline,
url/link/href, price/amount/offers.price, image/thumbnail/photo, date/datePublished/
published_time, description/summary, content/text/body/articleBody, author/creator...).
The first value that coerces to the property's type wins:

* `number`/`integer` from numeric text: the first amount in "$1,299.00" or "19,99 €";
  when `.` and `,` both occur the last one is the decimal mark, a single separator
  followed by exactly three digits is a thousands separator ("1.299" is 1299);
* `boolean` from true/yes/1/"in stock"/schema.org `InStock` (and their negatives);
* `string` from text or numbers; `format: date-time` gives RFC 3339 (naive times are UTC),
  `date` gives `YYYY-MM-DD`, `uri` an absolute URL against the page URL;
* `array` from lists, or comma-separated text for arrays of strings; `object` from
  nested nodes, mapped recursively; `enum` values match case- and separator-insensitively;
  `anyOf`/`oneOf` branches are tried in order.

Dates are read as ISO 8601 first, then by dateutil (month first in "03/04/2024") and only
when the text holds a four-digit year. Properties with no value are left out (never
`null`); a record with no property at all is dropped. Every item is validated with
jsonschema (the validator of the schema's `$schema`, Draft 2020-12 by default, checking
the `date`, `date-time` and `uri` formats); items that fail are dropped.

Choosing
--------
Records are grouped by kind (schema.org type, or one DOM structure) and a group scores
the mean number of properties its valid items fill. The source with the best group wins;
ties go to the earlier source in the list above, so structured data beats page layout,
which beats the page as a single record. Within the winning source, groups scoring within
`_COVERAGE_SLACK` of the best are kept, in page order (structured data: JSON-LD, then
microdata, then RDFa). Identical items are returned once.

Limits
------
Only the first `MAX_HTML_CHARS` characters are parsed and at most `MAX_CANDIDATES`
records are built. Table cells spanning several columns are not expanded. RDFa nested
nodes are separate candidates, not linked to their parent. Currency symbols are read
naively ("$" is USD). RDFa items come in the order of extruct's RDF graph, not the page's.
Untyped page layouts that are neither tables, lists nor cards (say, a sequence of
headings and paragraphs) only ever yield the page record. On a single article a
"related posts" grid whose cards fill as many properties as the page record wins the tie.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urljoin, urlsplit

from dateutil import parser as dateparser
from selectolax.lexbor import LexborHTMLParser, LexborNode

from batchplane.core.deferred import deferred_import

# These private helpers of the enrichment extractor already run extruct robustly (one
# JSON-LD block at a time, each syntax isolated, RDFa reduced to schema.org nodes); they
# are imported rather than copied so both extractors read structured data the same way.
from batchplane.enrichment.extract import (
    INVISIBLE_TAGS,
    describes_organization_or_person,
    local_name,
    schema_types,
    structured_items,
)

# Only scrape jobs validate against a JSON schema: deferred so other processors never
# load jsonschema and its referencing/rpds stack (~14 MB).
if TYPE_CHECKING:
    import jsonschema
    from jsonschema import validators as jsonschema_validators
    from jsonschema.protocols import Validator
    from referencing import exceptions as referencing_errors
else:
    jsonschema = deferred_import("jsonschema")
    jsonschema_validators = deferred_import("jsonschema.validators")
    referencing_errors = deferred_import("referencing.exceptions")

logger = logging.getLogger(__name__)

__all__ = ["MAX_CANDIDATES", "MAX_HTML_CHARS", "DateFilter", "extract_items"]

MAX_HTML_CHARS: Final = 2 * 1024 * 1024
"""Only this much of a page's HTML is parsed."""
MAX_CANDIDATES: Final = 2000
"""At most this many candidate records are built per page."""

Node = dict[str, Any]
Item = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateFilter:
    """Keep items whose `field` holds a date within [`start`, `end`] (both inclusive).

    `field` names a property of the output item. Either bound may be `None` (open).
    Naive datetimes, in the bounds and in the page, are UTC. A date without a time covers
    its whole day. Items whose field is missing or is not a date are dropped.
    """

    field: str
    start: datetime | None
    end: datetime | None


def extract_items(
    url: str,
    html: str,
    schema: Mapping[str, Any],
    *,
    max_items: int,
    date_filter: DateFilter | None = None,
) -> list[dict[str, Any]]:
    """Items of `html` (fetched from `url`) that validate against `schema`.

    Returns at most `max_items` items (none when it is below 1), in page order, each with
    only the schema's properties that have a value. Raises `ValueError` when `schema` is
    not a valid JSON schema or `$ref`s another document (nothing is fetched); never
    raises because of the page's content.
    """
    plan = _Plan(schema)
    if max_items < 1:
        return []
    page = _Page(url, html[:MAX_HTML_CHARS])
    items = _choose(plan, page, _Budget(MAX_CANDIDATES))
    if date_filter is not None:
        items = [item for item in items if _within(item.get(date_filter.field), date_filter)]
    return items[:max_items]


# ---------------------------------------------------------------------------------------
# The schema: properties, lookup keys, validation
# ---------------------------------------------------------------------------------------

_MAX_REF_HOPS: Final = 16
_MAX_NESTING: Final = 4


@dataclass(frozen=True)
class _Property:
    name: str
    keys: tuple[str, ...]  # record keys to try, in order
    schema: Mapping[str, Any]


class _Plan:
    """The caller's schema compiled once: item schema, its properties and a validator."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        cls = jsonschema_validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
        except jsonschema.SchemaError as exc:
            raise ValueError(f"invalid JSON schema: {exc.message}") from exc
        self.root = schema
        self.item = _item_schema(schema)
        # Evolving the root validator keeps its resolver, so `$ref`s inside the item
        # schema still resolve against the root document.
        self.validator: Validator = cls(schema, format_checker=_format_checker()).evolve(
            schema=self.item
        )
        self.properties = _properties(self.item, schema)
        self.all_strings = bool(self.properties) and all(
            _only_strings(p.schema, schema) for p in self.properties
        )

    def map(self, record: _Record, base_url: str) -> Item | None:
        """The record as a valid item, or `None` when nothing maps or it is invalid."""
        item = _map_properties(record, self.properties, _Context(self.root, base_url))
        if not item:
            return None
        try:
            valid = self.validator.is_valid(item)
        except (
            referencing_errors.Unresolvable
        ) as exc:  # a `$ref` to another document: nothing is fetched
            raise ValueError(f"invalid JSON schema: {exc}") from exc
        return item if valid else None


def _item_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    resolved = _resolve(schema, schema)
    items = resolved.get("items")
    if "array" in _type_names(resolved) and isinstance(items, Mapping):
        return _resolve(items, schema)
    return resolved


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """`schema` with local `$ref`s ("#/$defs/X") followed; anything else as it is."""
    for _ in range(_MAX_REF_HOPS):
        if not isinstance(schema, Mapping):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        schema = _pointer(root, ref[1:])
    return {}


def _pointer(root: Mapping[str, Any], pointer: str) -> Any:
    node: Any = root
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _type_names(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def _alternatives(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The schemas a value may match: the `anyOf`/`oneOf` branches, else `schema` itself."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(branches, list):
        return [_resolve(branch, root) for branch in branches]
    return [schema]


def _only_strings(schema: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    types = {t for alt in _alternatives(schema, root) for t in _type_names(alt)} - {"null"}
    return types == {"string"}


def _properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[_Property, ...]:
    declared = schema.get("properties")
    if not isinstance(declared, Mapping):
        return ()
    return tuple(
        _Property(name, _lookup_keys(name, prop), prop)
        for name, raw in declared.items()
        if isinstance(name, str) and (prop := _resolve(raw, root))
    )


def _lookup_keys(name: str, prop: Mapping[str, Any]) -> tuple[str, ...]:
    source = prop.get("x-source")
    explicit = [source] if isinstance(source, str) else source if isinstance(source, list) else []
    keys = [k for k in explicit if isinstance(k, str)] + [name, *_SYNONYMS.get(_norm(name), ())]
    unique: dict[str, str] = {}
    for key in keys:
        unique.setdefault(_norm(key), key)
    return tuple(unique.values())


def _norm(key: str) -> str:
    """`publishedAt`, `published_at` and `Published-At` all become `publishedat`."""
    return _NON_WORD.sub("", key.casefold())


_NON_WORD: Final = re.compile(r"[\W_]+")

# Each group lists names for one kind of value; a group of two tuples has a "near" and a
# "far" half (short descriptions versus full text): a name's own half is tried first.
_SYNONYM_GROUPS: Final[tuple[tuple[tuple[str, ...], ...], ...]] = (
    (("title", "name", "headline", "heading"),),
    (("url", "link", "href", "permalink"),),
    (("price", "amount", "offers.price", "offers.lowPrice", "lowPrice"),),
    (("currency", "priceCurrency", "offers.priceCurrency"),),
    (("image", "thumbnail", "thumbnailUrl", "photo", "picture", "img"),),
    (
        (
            "date",
            "published",
            "datePublished",
            "published_time",
            "publishedAt",
            "publicationDate",
            "pubDate",
            "uploadDate",
            "dateCreated",
            "startDate",
            "datetime",
        ),
    ),
    (("description", "summary", "excerpt", "abstract"), ("content", "text", "body", "articleBody")),
    (("author", "creator", "byline", "writer"),),
    (("availability", "offers.availability", "stock"),),
    (("sku", "productID", "mpn"),),
    (("brand", "manufacturer"),),
    (("rating", "ratingValue", "aggregateRating.ratingValue"),),
    (("category", "articleSection", "section", "genre"),),
    (("tags", "keywords", "tag"),),
)


def _synonym_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for group in _SYNONYM_GROUPS:
        for index, half in enumerate(group):
            others = [name for other in group[:index] + group[index + 1 :] for name in other]
            for name in half:
                table[_norm(name)] = tuple(n for n in (*half, *others) if n != name)
    return table


_SYNONYMS: Final = _synonym_table()


@lru_cache(maxsize=1)
def _format_checker() -> jsonschema.FormatChecker:
    """jsonschema's checker plus `date-time` and `uri`, whose own checks need extra
    packages (rfc3339-validator, rfc3987) that are not installed."""
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(_is_rfc3339)
    checker.checks("uri")(_is_absolute_uri)
    return checker


_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


def _is_rfc3339(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not _RFC3339.fullmatch(instance):
        return False
    try:
        datetime.fromisoformat(instance.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_absolute_uri(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not _URI.fullmatch(instance):
        return False
    parts = urlsplit(instance)
    return parts.scheme.lower() not in ("http", "https") or bool(parts.netloc)


# ---------------------------------------------------------------------------------------
# Candidate records and their mapping onto the schema
# ---------------------------------------------------------------------------------------

# The sources, in priority order (see "Choosing" in the module docstring).
_STRUCTURED, _LAYOUT, _PAGE, _IDENTITY = range(4)


@dataclass
class _Record:
    """Named values of one candidate; `own` keys are searched before `leaves` aliases."""

    source: int
    group: str
    own: dict[str, Any]
    leaves: dict[str, Any] = field(default_factory=dict)

    def values(self, keys: Sequence[str]) -> Iterator[Any]:
        """Non-empty values under `keys` (exactly, then ignoring case and separators)."""
        for layer, index in ((self.own, self._own_index), (self.leaves, self._leaf_index)):
            for key in keys:
                found = key if key in layer else index.get(_norm(key))
                if found is not None and not _is_empty(layer[found]):
                    yield layer[found]

    @cached_property
    def _own_index(self) -> dict[str, str]:
        return _index(self.own)

    @cached_property
    def _leaf_index(self) -> dict[str, str]:
        return _index(self.leaves)


def _index(layer: Mapping[str, Any]) -> dict[str, str]:
    index: dict[str, str] = {}
    for key in layer:
        index.setdefault(_norm(key), key)
    return index


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass(frozen=True)
class _Context:
    root: Mapping[str, Any]
    base_url: str
    depth: int = 0

    def deeper(self) -> _Context:
        return _Context(self.root, self.base_url, self.depth + 1)


def _map_properties(record: _Record, properties: Iterable[_Property], ctx: _Context) -> Item:
    item: Item = {}
    for prop in properties:
        for raw in record.values(prop.keys):
            value = _coerce(raw, prop.schema, ctx)
            if value is not None:
                item[prop.name] = value
                break
    return item


class _Budget:
    """Counts candidate records so a huge page cannot cost unbounded work."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


# ---------------------------------------------------------------------------------------
# Coercion of raw values to the property's JSON type
# ---------------------------------------------------------------------------------------


def _coerce(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> Any:
    """`raw` as a value for `schema`, or `None` when it cannot be one."""
    for alternative in _alternatives(schema, ctx.root):
        value = _coerce_to(raw, alternative, ctx)
        if value is not None:
            return value
    return None


def _coerce_to(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list):
        return _match_enum(raw, enum)
    types = [t for t in _type_names(schema) if t != "null"]
    if not types:
        return _untyped(raw)
    for name in types:
        convert = _CONVERTERS.get(name)
        value = convert(raw, schema, ctx) if convert else None
        if value is not None:
            return value
    return None


def _scalars(value: Any, depth: int = 0) -> Iterator[str | int | float | bool]:
    """The scalars a raw value stands for; a node stands for its value, name or URL."""
    if depth > _MAX_NESTING:
        return
    if isinstance(value, str | int | float | bool):
        yield value
    elif isinstance(value, list):
        for element in value:
            yield from _scalars(element, depth + 1)
    elif isinstance(value, dict):
        for key in ("@value", "name", "value", "url", "@id"):
            if key in value:
                yield from _scalars(value[key], depth + 1)
                return


def _texts(value: Any) -> Iterator[str]:
    for scalar in _scalars(value):
        if isinstance(scalar, bool):
            yield "true" if scalar else "false"
        elif isinstance(scalar, str):
            text = _collapse(scalar)
            if text and not text.startswith("_:"):  # RDFa blank nodes are not values
                yield text
        elif isinstance(scalar, int) or math.isfinite(scalar):
            yield str(scalar)


def _untyped(raw: Any) -> Any:
    for scalar in _scalars(raw):
        if isinstance(scalar, str):
            text = _collapse(scalar)
            if text:
                return text
        elif isinstance(scalar, int) or math.isfinite(scalar):
            return scalar
    return None


def _to_string(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> str | None:
    form = schema.get("format")
    formatter = _STRING_FORMATS.get(form) if isinstance(form, str) else None
    for text in _texts(raw):
        value = formatter(text, ctx.base_url) if formatter else text
        if value is not None:
            return value
    return None


def _to_number(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> float | None:
    for scalar in _scalars(raw):
        if isinstance(scalar, bool):
            continue
        number = _parse_number(scalar) if isinstance(scalar, str) else _finite(scalar)
        if number is not None:
            return number
    return None


def _finite(number: int | float) -> float | None:
    try:
        value = float(number)
    except OverflowError:  # an integer beyond float range
        return None
    return value if math.isfinite(value) else None


def _to_integer(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> int | None:
    number = _to_number(raw, schema, ctx)
    return int(number) if number is not None and number.is_integer() else None


_TRUE: Final = frozenset(
    {"true", "yes", "y", "1", "on", "instock", "available", "onlineonly", "instoreonly"}
    | {"limitedavailability"}
)
_FALSE: Final = frozenset(
    {"false", "no", "n", "0", "off", "outofstock", "soldout", "unavailable", "discontinued"}
)


def _to_boolean(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> bool | None:
    for scalar in _scalars(raw):
        if isinstance(scalar, bool):
            return scalar
        word = _norm(local_name(str(scalar)))
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    return None


def _to_array(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> list[Any] | None:
    items = _resolve(schema.get("items", {}), ctx.root)
    elements = raw if isinstance(raw, list) else [raw]
    if isinstance(raw, str) and _splits_text(items, ctx.root):
        elements = raw.split(",")
    values = [v for e in elements if (v := _coerce(e, items, ctx)) is not None]
    limit = schema.get("maxItems")
    if isinstance(limit, int):
        values = values[:limit]
    return values or None


def _splits_text(items: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    types = {t for alt in _alternatives(items, root) for t in _type_names(alt)}
    return not types - {"string", "null"} and "enum" not in items


def _to_object(raw: Any, schema: Mapping[str, Any], ctx: _Context) -> Item | None:
    if not isinstance(raw, dict) or ctx.depth >= _MAX_NESTING:
        return None
    record = _node_record(raw, _STRUCTURED, "nested")
    return _map_properties(record, _properties(schema, ctx.root), ctx.deeper()) or None


def _match_enum(raw: Any, enum: list[Any]) -> Any:
    for scalar in _scalars(raw):
        for allowed in enum:
            if allowed == scalar and type(allowed) is type(scalar):
                return allowed
        wanted = _norm(local_name(str(scalar))) if isinstance(scalar, str) else None
        for allowed in enum:
            if wanted and isinstance(allowed, str) and _norm(allowed) == wanted:
                return allowed
    return None


_CONVERTERS: Final[dict[str, Callable[[Any, Mapping[str, Any], _Context], Any]]] = {
    "string": _to_string,
    "number": _to_number,
    "integer": _to_integer,
    "boolean": _to_boolean,
    "array": _to_array,
    "object": _to_object,
}

# --- numbers ---------------------------------------------------------------------------

# Thousands groups separated by , . ' or a (narrow) space, an optional decimal part; or a
# plain number. The grouped form comes first so "1,299.00" is one number, not "1".
_AMOUNT: Final = r"\d{1,3}(?:[,.'\u00a0\u202f ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
_NUMBER: Final = re.compile(rf"(?P<sign>[-\u2212])?(?P<amount>{_AMOUNT})")


def _parse_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = _finite(float(_plain_amount(match["amount"])))
    return -value if value is not None and match["sign"] else value


def _plain_amount(amount: str) -> str:
    """`amount` with thousands separators dropped and a `.` decimal mark."""
    amount = re.sub(r"['\u00a0\u202f ]", "", amount)
    if "." in amount and "," in amount:
        decimal = "." if amount.rfind(".") > amount.rfind(",") else ","
        thousands = "," if decimal == "." else "."
        return amount.replace(thousands, "").replace(decimal, ".")
    separator = "." if "." in amount else "," if "," in amount else ""
    if not separator:
        return amount
    whole, _, fraction = amount.rpartition(separator)
    if amount.count(separator) > 1 or (len(fraction) == 3 and whole.strip("0")):
        return amount.replace(separator, "")
    return f"{whole}.{fraction}"


# --- prices in free text -----------------------------------------------------------------

_CURRENCY_SYMBOLS: Final = {
    "US$": "USD",
    "C$": "CAD",
    "A$": "AUD",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "JPY",
    "₹": "INR",
    "₩": "KRW",
    "₽": "RUB",
    "₺": "TRY",
    "₪": "ILS",
}
_CURRENCY_CODES: Final = (
    "USD EUR GBP JPY CHF CAD AUD NZD INR CNY SEK NOK DKK PLN CZK BRL MXN ZAR KRW TRY ILS"
)
_CURRENCY: Final = (
    r"US\$|C\$|A\$|[$€£¥₹₩₽₺₪]|(?<![A-Za-z])(?:"
    + _CURRENCY_CODES.replace(" ", "|")
    + r")(?![A-Za-z])"
)
_PRICE: Final = re.compile(
    rf"(?P<before>{_CURRENCY})\s?(?P<amount>{_AMOUNT})|(?P<amount2>{_AMOUNT})\s?(?P<after>{_CURRENCY})"
)


def _find_price(text: str) -> tuple[str, str] | None:
    """(amount text, ISO currency) of the first currency amount in `text`."""
    match = _PRICE.search(text)
    if match is None:
        return None
    amount = match["amount"] or match["amount2"]
    symbol = match["before"] or match["after"]
    return amount, _CURRENCY_SYMBOLS.get(symbol, symbol.upper())


# --- dates and URLs ----------------------------------------------------------------------

_YEAR: Final = re.compile(r"(?<!\d)(?:1[89]|2\d)\d{2}(?!\d)")
_DATEUTIL_DEFAULT: Final = datetime(2000, 1, 1)  # noqa: DTZ001 - fills missing parts only


def _parse_when(text: str) -> tuple[datetime, bool] | None:
    """(datetime, whether a time of day was given) for a date in `text`, else `None`."""
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text)
        return parsed, len(text) > len("2024-01-01")
    except ValueError:
        pass
    if not _YEAR.search(text):  # dateutil reads "5" or "10:00" as today's dates
        return None
    try:
        parsed = dateparser.parse(text, default=_DATEUTIL_DEFAULT, fuzzy=True, tzinfos=_zone_offset)
    except (ValueError, OverflowError):
        return None
    return parsed, ":" in text


# Zone abbreviations dateutil does not know (it warns, then drops them). Ambiguous ones
# such as IST are left out; an unknown zone leaves the time naive, that is UTC.
_ZONE_HOURS: Final = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "WEST": 1, "CET": 1, "CEST": 2,
    "EET": 2, "EEST": 3, "MSK": 3, "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11,
    "NZST": 12, "NZDT": 13, "HST": -10, "AKST": -9, "AKDT": -8, "PST": -8, "PDT": -7,
    "MST": -7, "MDT": -6, "CST": -6, "CDT": -5, "EST": -5, "EDT": -4,
}  # fmt: skip


def _zone_offset(name: str | None, offset: int | None) -> int | None:
    """dateutil's `tzinfos` hook: seconds east of UTC for a zone name or numeric offset."""
    hours = _ZONE_HOURS.get((name or "").upper())
    return offset if hours is None else hours * 3600


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _format_datetime(text: str, base_url: str) -> str | None:
    when = _parse_when(text)
    if when is None:
        return None
    return _as_utc(when[0]).isoformat().replace("+00:00", "Z")


def _format_date(text: str, base_url: str) -> str | None:
    when = _parse_when(text)
    return when[0].date().isoformat() if when else None


_PLAIN_HTTP_URL: Final = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?(?:[/?#]\S*)?")


def _format_uri(text: str, base_url: str) -> str | None:
    if _PLAIN_HTTP_URL.fullmatch(text):  # already absolute: the common case, skip urljoin
        return text
    if text.lower().startswith("javascript:"):
        return None
    absolute = urljoin(base_url, text.replace(" ", "%20"))
    return absolute if _is_absolute_uri(absolute) else None


def _format_email(text: str, base_url: str) -> str | None:
    address = text.removeprefix("mailto:").split("?", 1)[0].strip()
    return address if "@" in address else None


_STRING_FORMATS: Final[dict[str, Callable[[str, str], str | None]]] = {
    "date-time": _format_datetime,
    "date": _format_date,
    "uri": _format_uri,
    "iri": _format_uri,
    "email": _format_email,
}


def _within(value: Any, date_filter: DateFilter) -> bool:
    """Whether `value` is a date inside the filter's range; a bare date spans its day."""
    when = _parse_when(value) if isinstance(value, str) else None
    if when is None:
        return False
    first = _as_utc(when[0])
    last = first if when[1] else first + timedelta(days=1) - timedelta(microseconds=1)
    start, end = date_filter.start, date_filter.end
    if start is not None and last < _as_utc(start):
        return False
    return end is None or first <= _as_utc(end)


# ---------------------------------------------------------------------------------------
# Choosing between sources
# ---------------------------------------------------------------------------------------

_COVERAGE_SLACK: Final = 0.5
"""Groups filling on average this many fewer properties than the best are dropped."""


@dataclass(frozen=True)
class _Mapped:
    group: str
    item: Item


def _choose(plan: _Plan, page: _Page, budget: _Budget) -> list[Item]:
    """The items of the best-scoring source; later sources are built only when needed."""
    best: list[_Mapped] = []
    best_score = 0.0
    for mapped in _sources(plan, page, budget):
        score = max(_group_scores(mapped).values(), default=0.0)
        if score > best_score:  # a tie keeps the earlier source
            best, best_score = mapped, score
        if best_score >= len(plan.properties):  # nothing later can do better
            break
    return _select(best)


def _sources(plan: _Plan, page: _Page, budget: _Budget) -> Iterator[list[_Mapped]]:
    structured = list(_structured_records(page, budget))
    yield _map_all(plan, page.url, (r for r in structured if r.source == _STRUCTURED))
    yield _map_all(plan, page.url, _layout_records(page, budget))
    yield _map_all(plan, page.url, [_page_record(page, with_dom=plan.all_strings)])
    yield _map_all(plan, page.url, (r for r in structured if r.source == _IDENTITY))


def _map_all(plan: _Plan, base_url: str, records: Iterable[_Record]) -> list[_Mapped]:
    mapped = []
    for record in records:
        item = plan.map(record, base_url)
        if item is not None:
            mapped.append(_Mapped(record.group, item))
    return mapped


def _group_scores(mapped: Sequence[_Mapped]) -> dict[str, float]:
    """Mean number of properties the items of each group fill."""
    totals: dict[str, list[int]] = {}
    for entry in mapped:
        totals.setdefault(entry.group, []).append(len(entry.item))
    return {group: sum(sizes) / len(sizes) for group, sizes in totals.items()}


def _select(mapped: Sequence[_Mapped]) -> list[Item]:
    scores = _group_scores(mapped)
    floor = max(scores.values(), default=0.0) - _COVERAGE_SLACK
    seen: set[str] = set()
    items = []
    for entry in mapped:
        key = json.dumps(entry.item, sort_keys=True, default=str)
        if scores[entry.group] >= floor and key not in seen:
            seen.add(key)
            items.append(entry.item)
    return items


# ---------------------------------------------------------------------------------------
# The parsed page
# ---------------------------------------------------------------------------------------

_JSONLD_SCRIPT: Final = '//script[@type="application/ld+json"]'


class _Page:
    """A page parsed once, with lazily computed views of it."""

    def __init__(self, url: str, html: str) -> None:
        self.url = url
        self.html = html
        self.dom = LexborHTMLParser(html)
        # Nothing read from this DOM lives in scripts (extruct reads JSON-LD from its own
        # lxml tree); a <br> separates words that text extraction would otherwise glue.
        self.dom.strip_tags(INVISIBLE_TAGS, recursive=True)
        for br in self.dom.css("br"):
            br.replace_with(" ")

    @cached_property
    def structured(self) -> list[Any]:
        """JSON-LD documents, microdata items and RDFa nodes, in that order."""
        return structured_items(self.html, self.url, self.dom)

    @cached_property
    def meta(self) -> dict[str, str]:
        """`<meta>` content by lower-cased `property` or `name`; the first non-empty wins."""
        meta: dict[str, str] = {}
        for tag in self.dom.css("meta[content]"):
            attrs = tag.attributes
            key = (attrs.get("property") or attrs.get("name") or "").strip().lower()
            content = _collapse(attrs.get("content") or "")
            if key and content:
                meta.setdefault(key, content)
        return meta

    def absolute(self, href: str | None) -> str | None:
        href = (href or "").strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return None
        return urljoin(self.url, href)


def _collapse(text: str) -> str:
    return " ".join(text.split())


# Phrasing elements: text on either side of them belongs to the same words. Every other
# element separates words, so "<li>a</li><li>b</li>" reads "a b" but "<b>7</b>." reads "7.".
_INLINE_TAGS: Final = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "font", "i"}
    | {"ins", "kbd", "label", "mark", "q", "s", "samp", "small", "span", "strong", "sub"}
    | {"sup", "time", "u", "var", "wbr"}
)


def _text(root: LexborNode, skip: frozenset[str] = frozenset()) -> str:
    """Whitespace-collapsed text of `root`, leaving out the subtrees of `skip` tags."""
    parts: list[str] = []
    stack: list[LexborNode | str] = list(reversed(list(root.iter(include_text=True))))
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            parts.append(node)
        elif node.is_text_node:
            parts.append(node.text_content or "")
        elif node.is_element_node and node.tag not in skip:
            gap = "" if node.tag in _INLINE_TAGS else " "
            stack.append(gap)
            stack.extend(reversed(list(node.iter(include_text=True))))
            stack.append(gap)
    return _collapse("".join(parts))


# ---------------------------------------------------------------------------------------
# Source 1 and 4: structured data
# ---------------------------------------------------------------------------------------

_CONTAINER_TYPES: Final = frozenset({"ItemList", "OfferCatalog"})
_FURNITURE_TYPES: Final = frozenset(
    {"WebSite", "BreadcrumbList", "ListItem", "SiteNavigationElement", "ImageObject"}
    | {"WPHeader", "WPFooter", "WPSideBar", "WPAdBlock", "EntryPoint", "SearchAction"}
    | {"ReadAction", "WebPageElement"}
)


def _structured_records(page: _Page, budget: _Budget) -> Iterator[_Record]:
    for document in page.structured:
        for node, listed in _item_nodes(document, listed=False, depth=0):
            if not budget.spend():
                return
            identity = not listed and describes_organization_or_person(node)
            source = _IDENTITY if identity else _STRUCTURED
            yield _node_record(node, source, "ld:" + ",".join(sorted(schema_types(node))))


def _item_nodes(value: Any, *, listed: bool, depth: int) -> Iterator[tuple[Node, bool]]:
    """(node, whether an ItemList named it) for every item-like node in `value`."""
    if depth > _MAX_NESTING:
        return
    if isinstance(value, list):
        for element in value:
            yield from _item_nodes(element, listed=listed, depth=depth + 1)
        return
    if not isinstance(value, dict):
        return
    node = {local_name(str(key)): item for key, item in value.items()}
    types = schema_types(node)
    if "@graph" in node:
        yield from _item_nodes(node["@graph"], listed=listed, depth=depth + 1)
    elif types & _CONTAINER_TYPES:
        for element in _as_list(node.get("itemListElement")):
            yield from _item_nodes(_list_entry(element), listed=True, depth=depth + 1)
    elif types & _FURNITURE_TYPES or any(t.endswith("Page") for t in types):
        yield from _item_nodes(node.get("mainEntity"), listed=listed, depth=depth + 1)
    else:
        yield node, listed


def _list_entry(element: Any) -> Any:
    """The thing a `ListItem` stands for: its `item`, or a bare URL with the entry's name."""
    if isinstance(element, str):
        return {"url": element}
    if not isinstance(element, dict) or "item" not in element:
        return element
    item = element["item"]
    if isinstance(item, str):
        return {"url": item, "name": element.get("name")}
    return item


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _node_record(node: Node, source: int, group: str) -> _Record:
    """A schema.org node as a record: its properties, dotted paths into nested nodes,
    and the nested leaf names as aliases."""
    record = _Record(source, group, {})
    for key, value in node.items():
        name = local_name(str(key))
        if name == "@context":
            continue
        record.own.setdefault(name, value)
        _add_paths(record, name, value, depth=1)
    return record


def _add_paths(record: _Record, prefix: str, value: Any, depth: int) -> None:
    nested = value[0] if isinstance(value, list) and value else value
    if not isinstance(nested, dict) or depth > _MAX_NESTING:
        return
    for key, child in nested.items():
        name = local_name(str(key))
        if name.startswith("@"):
            continue
        path = f"{prefix}.{name}"
        record.own.setdefault(path, child)
        record.leaves.setdefault(name, child)
        _add_paths(record, path, child, depth + 1)


# ---------------------------------------------------------------------------------------
# Source 2: repeated page structures
# ---------------------------------------------------------------------------------------

# Site chrome: lists and grids in there are menus, link farms and widgets, not content.
_CHROME_TAGS: Final = frozenset({"nav", "header", "footer", "aside", "form", "head", "svg"})
_CARD_TAGS: Final = frozenset({"div", "article", "section", "a", "figure"})
_MIN_LIST_ITEMS: Final = 2
_MIN_CARDS: Final = 3
_HEADINGS: Final = "h1, h2, h3, h4, h5, h6"
_TITLE_CLASS: Final = re.compile(r"(?:^|[-_])(?:title|name|headline)$")


def _layout_records(page: _Page, budget: _Budget) -> Iterator[_Record]:
    for number, (kind, elements) in enumerate(_structures(page)):
        group = f"{kind}#{number}"
        if kind == "table":
            rows = _table_records(elements, page, group)
        else:
            rows = (_element_record(element, page, group) for element in elements)
        for record in rows:
            if not budget.spend():
                return
            yield record


def _structures(page: _Page) -> Iterator[tuple[str, list[LexborNode]]]:
    """(kind, elements) of every table, list and card group, in document order."""
    body = page.dom.body
    stack = [body] if body is not None else []
    while stack:
        node = stack.pop()
        children = [c for c in node.iter() if c.is_element_node and c.tag not in _CHROME_TAGS]
        if node.tag == "table":
            yield "table", [node]
        elif node.tag in ("ul", "ol"):
            items = [c for c in children if c.tag == "li"]
            if len(items) >= _MIN_LIST_ITEMS:
                yield "list", items
        else:
            yield from (("cards", group) for group in _card_groups(children))
        stack.extend(reversed(children))


def _card_groups(children: list[LexborNode]) -> Iterator[list[LexborNode]]:
    groups: dict[tuple[str, frozenset[str]], list[LexborNode]] = {}
    for child in children:
        classes = frozenset((child.attributes.get("class") or "").split())
        if child.tag in _CARD_TAGS and (classes or child.tag == "article"):
            groups.setdefault((child.tag or "", classes), []).append(child)
    yield from (group for group in groups.values() if len(group) >= _MIN_CARDS)


def _element_record(element: LexborNode, page: _Page, group: str) -> _Record:
    """A list item or card as a record (see the module docstring for the fields)."""
    record = _Record(_LAYOUT, group, {})
    own = record.own
    text = _text(element)
    title = _element_title(element, text)
    if title:
        own["title"] = own["name"] = title
    link = element if element.tag == "a" else element.css_first("a[href]")
    url = page.absolute(link.attributes.get("href")) if link is not None else None
    if url:
        own["url"] = own["link"] = url
    _add_media(own, element, page)
    _add_named_fields(record, element)
    _add_text_fields(own, element, text, title)
    return record


def _element_title(element: LexborNode, text: str) -> str | None:
    heading = element.css_first(_HEADINGS)
    if heading is not None and (title := _text(heading)):
        return title
    for node in _descendants(element, "[class]"):
        classes = (node.attributes.get("class") or "").split()
        if any(_TITLE_CLASS.search(token) for token in classes):
            return _text(node) or None
    link = element if element.tag == "a" else element.css_first("a[href]")
    # A link is the title only when it leads the text ("<a>Post</a> - May 3"), not when
    # it sits inside a sentence ("Read <a>the docs</a> first").
    link_text = _text(link) if link is not None else ""
    return link_text if link_text and text.startswith(link_text) else None


def _add_media(own: dict[str, Any], element: LexborNode, page: _Page) -> None:
    image = element.css_first("img")
    if image is not None:
        src = page.absolute(image.attributes.get("src") or image.attributes.get("data-src"))
        if src:
            own.setdefault("image", src)
    moment = element.css_first("time[datetime]")
    if moment is not None and (stamp := (moment.attributes.get("datetime") or "").strip()):
        own.setdefault("date", stamp)


def _add_named_fields(record: _Record, element: LexborNode) -> None:
    """Fields named by `data-*` attributes, `itemprop`s and `class` tokens."""
    _add_data_fields(record, element)
    for node in _descendants(element, "*"):
        _add_data_fields(record, node)
        names = (node.attributes.get("itemprop") or "").split()
        classes = (node.attributes.get("class") or "").split()
        if not (names or classes):
            continue
        value = _node_value(node)
        if not value:
            continue
        for name in names + classes:
            record.own.setdefault(name, value)
        for token in classes:
            # BEM and prefixed names: "product-card__price" and "sale-price" are prices.
            record.leaves.setdefault(re.split(r"__|[-_]", token)[-1], value)


def _descendants(element: LexborNode, selector: str) -> Iterator[LexborNode]:
    """Matches of `selector` below `element` (lexbor's `css` also matches the element)."""
    matches = iter(element.css(selector))
    first = next(matches, None)
    if first is not None and first != element:
        yield first
    yield from matches


def _add_data_fields(record: _Record, node: LexborNode) -> None:
    for attr, value in node.attributes.items():
        if attr.startswith("data-") and value and value.strip():
            record.own.setdefault(attr[5:], value.strip())


# Elements whose value is an attribute rather than their text.
_VALUE_ATTRIBUTES: Final = {"time": "datetime", "img": "src", "meta": "content", "data": "value"}


def _node_value(node: LexborNode) -> str | None:
    attrs = node.attributes
    for attr in (_VALUE_ATTRIBUTES.get(node.tag or ""), "content"):
        value = (attrs.get(attr) or "").strip() if attr else ""
        if value:
            return value
    text = _text(node)
    if not text and node.tag == "a":
        return (attrs.get("href") or "").strip() or None
    return text or None


def _add_text_fields(
    own: dict[str, Any], element: LexborNode, text: str, title: str | None
) -> None:
    price = _find_price(text)
    if price:
        own.setdefault("price", price[0])
        own.setdefault("priceCurrency", price[1])
    rest = _collapse(text.replace(title, " ", 1)) if title else text
    paragraph = element.css_first("p")
    summary = _text(paragraph) if paragraph is not None else ""
    own.setdefault("description", summary or rest)
    own.setdefault("content", rest)
    own.setdefault("text", rest)


def _table_records(tables: list[LexborNode], page: _Page, group: str) -> Iterator[_Record]:
    rows = _table_rows(tables[0])
    header_at = _header_row(rows)
    if header_at is None:
        return
    names = [_text(cell) for cell in _cells(rows[header_at])]
    for row in rows[header_at + 1 :]:
        cells = _cells(row)
        if any(cell.tag == "td" for cell in cells):
            yield _row_record(names, cells, row, page, group)


def _table_rows(table: LexborNode) -> list[LexborNode]:
    """The table's own rows (in thead/tbody/tfoot or bare), not those of nested tables."""
    rows = []
    for child in table.iter():
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend(row for row in child.iter() if row.tag == "tr")
    return rows


def _cells(row: LexborNode) -> list[LexborNode]:
    return [cell for cell in row.iter() if cell.tag in ("td", "th")]


def _header_row(rows: list[LexborNode]) -> int | None:
    """Index of the header row: the last one in <thead>, else the first all-<th> row."""
    in_head = [i for i, row in enumerate(rows) if row.parent and row.parent.tag == "thead"]
    if in_head:
        return in_head[-1]
    for index, row in enumerate(rows):
        cells = _cells(row)
        if cells and all(cell.tag == "th" for cell in cells):
            return index
    return None


def _row_record(
    names: list[str], cells: list[LexborNode], row: LexborNode, page: _Page, group: str
) -> _Record:
    record = _Record(_LAYOUT, group, {})
    for name, cell in zip(names, cells, strict=False):
        value = _cell_value(cell, page)
        if name and value:
            record.own.setdefault(name, value)
            # "Price (USD)" is the price.
            record.own.setdefault(re.sub(r"\s*[(\[].*?[)\]]\s*", " ", name).strip(), value)
    link = row.css_first("a[href]")
    url = page.absolute(link.attributes.get("href")) if link is not None else None
    if url:
        record.own.setdefault("url", url)
        record.own.setdefault("link", url)
    _add_media(record.own, row, page)
    return record


def _cell_value(cell: LexborNode, page: _Page) -> str | None:
    moment = cell.css_first("time[datetime]")
    if moment is not None and (stamp := (moment.attributes.get("datetime") or "").strip()):
        return stamp
    text = _text(cell)
    if text:
        return text
    media = cell.css_first("a[href], img[src]")
    if media is None:
        return None
    return page.absolute(media.attributes.get("href") or media.attributes.get("src"))


# ---------------------------------------------------------------------------------------
# Source 3: the page as one record
# ---------------------------------------------------------------------------------------

_META_PREFIXES: Final = ("og:", "article:", "product:", "book:", "profile:", "video:")
_META_FIELDS: Final = {
    "product:price:amount": "price",
    "product:price:currency": "priceCurrency",
    "og:price:amount": "price",
    "og:price:currency": "priceCurrency",
}
_MAIN_SELECTORS: Final = ("article", "main", "[role=main]")
# Not part of an article's text: site chrome, and the h1 that `title` already holds.
_NOT_CONTENT: Final = _CHROME_TAGS | {"h1", "button", "select", "template"}


def _page_record(page: _Page, *, with_dom: bool) -> _Record:
    """OpenGraph-style meta tags; with `with_dom`, also title, text and more from the DOM."""
    record = _Record(_PAGE, "page", {})
    for key, value in page.meta.items():
        if key.startswith(_META_PREFIXES):
            record.own[key] = value
            short = _META_FIELDS.get(key) or key.split(":", 1)[1].replace(":", "_")
            record.own.setdefault(short, value)
    if with_dom:
        _add_dom_fields(record.own, page)
    return record


def _add_dom_fields(own: dict[str, Any], page: _Page) -> None:
    container = _main_container(page)
    title = _page_title(page)
    if title:
        own["title"] = title
    text = _content_text(container) if container is not None else ""
    if text:
        own["content"] = own["text"] = own["body"] = text
    description = page.meta.get("og:description") or page.meta.get("description")
    if description:
        own.setdefault("description", description)
    canonical = page.dom.css_first('link[rel="canonical"]')
    href = canonical.attributes.get("href") if canonical is not None else None
    own.setdefault("url", page.absolute(page.meta.get("og:url") or href) or page.url)
    moment = container.css_first("time[datetime]") if container is not None else None
    if moment is not None and moment.attributes.get("datetime"):
        own.setdefault("date", moment.attributes["datetime"])
    if page.meta.get("author"):
        own.setdefault("author", page.meta["author"])


def _main_container(page: _Page) -> LexborNode | None:
    for selector in _MAIN_SELECTORS:
        node = page.dom.css_first(selector)
        if node is not None:
            return node
    return page.dom.body


def _page_title(page: _Page) -> str | None:
    heading = page.dom.css_first("article h1, main h1")
    candidates = (
        _text(heading) if heading is not None else None,
        page.meta.get("og:title"),
        _first_text(page, "title"),
        _first_text(page, "h1"),
    )
    return next((text for text in candidates if text), None)


def _first_text(page: _Page, selector: str) -> str | None:
    node = page.dom.css_first(selector)
    return _text(node) if node is not None else None


def _content_text(container: LexborNode) -> str:
    """Text of `container` without site chrome and h1s."""
    return _text(container, skip=_NOT_CONTENT)
