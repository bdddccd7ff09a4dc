"""Tests of schema-driven item extraction from single HTML pages (seed 004)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from tests.support.scrape_pages import (
    ARTICLE_LIST_SCHEMA,
    ARTICLE_PAGE,
    ARTICLE_PAGE_URL,
    CARD_GRID,
    CARD_GRID_URL,
    CARD_SCHEMA,
    DATED_ARTICLES,
    DATED_ARTICLES_URL,
    EXPECTED_ARTICLES,
    EXPECTED_CARDS,
    PAGES,
    PRODUCT_LISTING_JSONLD,
    PRODUCT_LISTING_URL,
    PRODUCT_SCHEMA,
    SEED_SCHEMA,
)

from batchplane.scrape.extract import MAX_CANDIDATES, MAX_HTML_CHARS, DateFilter, extract_items

URL = "https://site.test/list/"
PAGE_IDS = [page[0] for page in PAGES]


def _page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def _jsonld(*nodes: dict[str, Any]) -> str:
    return "".join(
        f'<script type="application/ld+json">{json.dumps({"@context": "https://schema.org", **node})}</script>'
        for node in nodes
    )


def _schema(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


# ---------------------------------------------------------------------------------------
# The fixture pages
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "url", "html", "schema", "expected"), PAGES, ids=PAGE_IDS)
def test_extracts_exactly_the_expected_items(
    name: str, url: str, html: str, schema: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    assert extract_items(url, html, schema, max_items=50) == expected


@pytest.mark.parametrize(("name", "url", "html", "schema", "expected"), PAGES, ids=PAGE_IDS)
def test_every_item_validates_against_its_schema(
    name: str, url: str, html: str, schema: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    items = extract_items(url, html, schema, max_items=50)
    assert items
    for item in items:
        validator.validate(item)
        assert None not in item.values()
        assert set(item) <= set(schema["properties"])


@pytest.mark.parametrize(("name", "url", "html", "schema", "expected"), PAGES, ids=PAGE_IDS)
def test_max_items_keeps_the_first_items_in_page_order(
    name: str, url: str, html: str, schema: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    assert extract_items(url, html, schema, max_items=2) == expected[:2]


@pytest.mark.parametrize("max_items", [0, -1])
def test_no_items_when_max_items_is_below_one(max_items: int) -> None:
    assert extract_items(CARD_GRID_URL, CARD_GRID, CARD_SCHEMA, max_items=max_items) == []


def test_the_schema_is_not_modified() -> None:
    schema = copy.deepcopy(PRODUCT_SCHEMA)
    extract_items(PRODUCT_LISTING_URL, PRODUCT_LISTING_JSONLD, schema, max_items=5)
    assert schema == PRODUCT_SCHEMA


def test_the_seed_schema_on_a_listing_page_gives_one_item_per_post() -> None:
    items = extract_items(DATED_ARTICLES_URL, DATED_ARTICLES, SEED_SCHEMA, max_items=50)
    assert items[0] == {
        "title": "Running Kafka in production",
        "content": "January 15, 2024 What two years of consumer groups taught us.",
    }
    assert [item["title"] for item in items] == [a["title"] for a in EXPECTED_ARTICLES]


# ---------------------------------------------------------------------------------------
# Candidate sources
# ---------------------------------------------------------------------------------------


def test_malformed_json_ld_blocks_are_skipped_not_fatal() -> None:
    good = {"@type": "Product", "name": "Anvil", "url": "/anvil", "offers": {"price": "10"}}
    html = _page("", head='<script type="application/ld+json">{"@type": "Product", </script>')
    html = html.replace("</head>", _jsonld(good) + "</head>")
    items = extract_items(URL, html, PRODUCT_SCHEMA, max_items=5)
    assert items == [{"name": "Anvil", "url": "https://site.test/anvil", "price": 10.0}]


def test_only_malformed_json_ld_gives_nothing() -> None:
    html = _page("<p>hi</p>", head='<script type="application/ld+json">{"@graph": [</script>')
    assert extract_items(URL, html, PRODUCT_SCHEMA, max_items=5) == []


def test_microdata_items_are_candidates() -> None:
    card = (
        '<div itemscope itemtype="https://schema.org/Product"><h2 itemprop="name">{name}</h2>'
        '<a itemprop="url" href="/p/{slug}">more</a><div itemprop="offers" itemscope '
        'itemtype="https://schema.org/Offer"><span itemprop="price" content="{price}">'
        '${price}</span><meta itemprop="priceCurrency" content="USD"></div></div>'
    )
    body = "".join(
        card.format(name=n, slug=s, price=p)
        for n, s, p in [("Tongs", "t", "9.5"), ("Vise", "v", "42")]
    )
    items = extract_items(URL, _page(body), PRODUCT_SCHEMA, max_items=5)
    assert items == [
        {"name": "Tongs", "url": "https://site.test/p/t", "price": 9.5, "currency": "USD"},
        {"name": "Vise", "url": "https://site.test/p/v", "price": 42.0, "currency": "USD"},
    ]


def test_the_same_item_in_json_ld_and_microdata_is_returned_once() -> None:
    node = {"@type": "Product", "name": "Vise", "url": "https://site.test/p/v", "sku": "V1"}
    microdata = (
        '<div itemscope itemtype="https://schema.org/Product"><span itemprop="name">Vise</span>'
        '<link itemprop="url" href="/p/v"><span itemprop="sku">V1</span></div>'
    )
    schema = _schema(name={"type": "string"}, url={"type": "string"}, sku={"type": "string"})
    items = extract_items(URL, _page(microdata, head=_jsonld(node)), schema, max_items=5)
    assert items == [{"name": "Vise", "url": "https://site.test/p/v", "sku": "V1"}]


def test_schema_org_rdfa_items_are_candidates() -> None:
    event = (
        '<div vocab="https://schema.org/" typeof="Event"><h2 property="name">{name}</h2>'
        '<span property="startDate" content="{start}">soon</span></div>'
    )
    body = event.format(name="Forge day", start="2024-06-01T10:00:00+02:00") + event.format(
        name="Anvil fair", start="2024-07-13"
    )
    schema = _schema(name={"type": "string"}, date={"type": "string", "format": "date-time"})
    schema["required"] = ["name", "date"]
    items = extract_items(URL, _page(body), schema, max_items=5)
    # An RDF graph has no order, so neither have its items.
    assert sorted(items, key=lambda item: item["date"]) == [
        {"name": "Forge day", "date": "2024-06-01T10:00:00+02:00"},
        {"name": "Anvil fair", "date": "2024-07-13T00:00:00Z"},
    ]


def test_opengraph_describes_the_page_when_nothing_else_matches() -> None:
    head = (
        '<meta property="og:title" content="Spring sale">'
        '<meta property="og:image" content="/img/sale.png">'
        '<meta property="article:published_time" content="2024-04-01T08:00:00Z">'
    )
    schema = _schema(
        title={"type": "string"},
        image={"type": "string", "format": "uri"},
        published={"type": "string", "format": "date"},
        tags={"type": "array", "items": {"type": "string"}},
    )
    assert extract_items(URL, _page("<p>Sale!</p>", head), schema, max_items=5) == [
        {
            "title": "Spring sale",
            "image": "https://site.test/img/sale.png",
            "published": "2024-04-01",
        }
    ]


def test_site_identity_in_json_ld_does_not_replace_the_article() -> None:
    items = extract_items(ARTICLE_PAGE_URL, ARTICLE_PAGE, SEED_SCHEMA, max_items=5)
    assert [item["title"] for item in items] == ["How we cut our build times in half"]


def test_site_identity_is_used_when_it_matches_best() -> None:
    schema = _schema(
        name={"type": "string"},
        url={"type": "string", "format": "uri"},
        description={"type": "string"},
        employees={"type": "integer"},
    )
    assert extract_items(ARTICLE_PAGE_URL, ARTICLE_PAGE, schema, max_items=5) == [
        {
            "name": "Acme Inc.",
            "url": "https://www.acme.test/",
            "description": "Acme builds tools for blacksmiths.",
        }
    ]


def test_navigation_and_footer_lists_are_not_items() -> None:
    body = (
        '<nav><ul><li><a href="/a">Alpha</a></li><li><a href="/b">Beta</a></li></ul></nav>'
        '<footer><ul><li><a href="/t">Terms</a></li><li><a href="/p">Privacy</a></li></ul></footer>'
    )
    schema = _schema(title={"type": "string"}, url={"type": "string", "format": "uri"})
    schema["required"] = ["title", "url"]
    assert extract_items(URL, _page(body), schema, max_items=5) == []


def test_list_items_with_class_fields_and_data_attributes() -> None:
    item = (
        '<li data-sku="{sku}"><a href="/p/{sku}">{name}</a> '
        '<span class="stock-count">{stock} left</span> <span class="tag">new</span></li>'
    )
    body = (
        "<ul>"
        + "".join(
            item.format(sku=s, name=n, stock=c) for s, n, c in [("A1", "Awl", 3), ("B2", "Bit", 12)]
        )
        + "</ul>"
    )
    schema = _schema(
        name={"type": "string"},
        sku={"type": "string"},
        count={"type": "integer"},
        url={"type": "string", "format": "uri"},
    )
    assert extract_items(URL, _page(body), schema, max_items=5) == [
        {"name": "Awl", "sku": "A1", "count": 3, "url": "https://site.test/p/A1"},
        {"name": "Bit", "sku": "B2", "count": 12, "url": "https://site.test/p/B2"},
    ]


def test_table_without_a_header_row_gives_no_rows() -> None:
    body = "<table>" + "<tr><td>Awl</td><td>$3</td></tr>" * 3 + "</table>"
    schema = _schema(name={"type": "string"}, price={"type": "number"})
    schema["required"] = ["name", "price"]
    assert extract_items(URL, _page(body), schema, max_items=5) == []


def test_table_with_header_cells_in_the_first_row() -> None:
    body = (
        "<table><tr><th>Tool</th><th>Unit price</th></tr>"
        "<tr><td>Awl</td><td>3,50 €</td></tr><tr><td>Bit</td><td>12 €</td></tr></table>"
    )
    schema = _schema(tool={"type": "string"}, unit_price={"type": "number"})
    assert extract_items(URL, _page(body), schema, max_items=5) == [
        {"tool": "Awl", "unit_price": 3.5},
        {"tool": "Bit", "unit_price": 12.0},
    ]


# ---------------------------------------------------------------------------------------
# Mapping onto the schema
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prop", ["publishedAt", "published_at", "published-at", "Published At"])
def test_property_names_match_ignoring_case_and_separators(prop: str) -> None:
    head = _jsonld({"@type": "Article", "headline": "Hi", "published_at": "2024-02-03"})
    schema = _schema(**{prop: {"type": "string", "format": "date"}})
    assert extract_items(URL, _page("", head), schema, max_items=5) == [{prop: "2024-02-03"}]


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("title", "Anvil care"),
        ("name", "Anvil care"),
        ("link", "https://site.test/anvil-care"),
        ("thumbnail", "https://site.test/t.jpg"),
        ("date", "2024-02-03"),
        ("summary", "Oil it."),
        ("body", "Oil it once a month."),
        ("author", "Jane Roe"),
    ],
)
def test_synonyms_find_values_under_other_names(prop: str, expected: str) -> None:
    node = {
        "@type": "Article",
        "headline": "Anvil care",
        "url": "/anvil-care",
        "image": "/t.jpg",
        "datePublished": "2024-02-03",
        "description": "Oil it.",
        "articleBody": "Oil it once a month.",
        "author": {"@type": "Person", "name": "Jane Roe"},
    }
    fmt = {"link": "uri", "thumbnail": "uri", "date": "date"}
    prop_schema = {"type": "string", **({"format": fmt[prop]} if prop in fmt else {})}
    items = extract_items(
        URL, _page("", _jsonld(node)), _schema(**{prop: prop_schema}), max_items=5
    )
    assert items == [{prop: expected}]


def test_x_source_names_the_keys_to_read_first() -> None:
    head = _jsonld({"@type": "Product", "name": "Vise", "alternateName": "Bench vise"})
    schema = _schema(name={"type": "string", "x-source": ["alternateName"]})
    assert extract_items(URL, _page("", head), schema, max_items=5) == [{"name": "Bench vise"}]


def test_dotted_paths_and_leaf_names_reach_nested_values() -> None:
    node = {
        "@type": "Product",
        "name": "Vise",
        "brand": {"@type": "Brand", "name": "Acme"},
        "aggregateRating": {"ratingValue": "4.5", "reviewCount": "1,024"},
    }
    schema = _schema(
        name={"type": "string"},
        **{"brand.name": {"type": "string"}},
        rating={"type": "number"},
        reviewCount={"type": "integer"},
    )
    assert extract_items(URL, _page("", _jsonld(node)), schema, max_items=5) == [
        {"name": "Vise", "brand.name": "Acme", "rating": 4.5, "reviewCount": 1024}
    ]


def test_nested_object_properties_are_mapped_recursively() -> None:
    node = {
        "@type": "Product",
        "name": "Vise",
        "offers": {"price": "€ 1.299,00", "priceCurrency": "EUR"},
    }
    schema = _schema(
        name={"type": "string"},
        offers={
            "type": "object",
            "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
        },
    )
    assert extract_items(URL, _page("", _jsonld(node)), schema, max_items=5) == [
        {"name": "Vise", "offers": {"amount": 1299.0, "currency": "EUR"}}
    ]


def test_a_required_property_no_candidate_has_gives_no_items() -> None:
    schema = copy.deepcopy(PRODUCT_SCHEMA)
    schema["properties"]["warranty_years"] = {"type": "integer"}
    schema["required"] = [*schema["required"], "warranty_years"]
    assert extract_items(PRODUCT_LISTING_URL, PRODUCT_LISTING_JSONLD, schema, max_items=5) == []


def test_records_with_no_mapped_property_are_dropped() -> None:
    schema = _schema(isbn={"type": "string"}, pages={"type": "integer"})
    assert extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=50) == []


def test_a_schema_without_properties_gives_no_items() -> None:
    assert extract_items(CARD_GRID_URL, CARD_GRID, {"type": "object"}, max_items=5) == []


def test_an_array_schema_describes_its_items() -> None:
    schema = {"type": "array", "items": CARD_SCHEMA}
    assert extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=50) == EXPECTED_CARDS


def test_an_array_schema_with_refs_to_defs() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "items": {"$ref": "#/$defs/Deal"},
        "$defs": {
            "Deal": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "price": {"$ref": "#/$defs/Money"}},
                "required": ["title", "price"],
            },
            "Money": {"type": "number", "exclusiveMinimum": 0},
        },
    }
    items = extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=50)
    assert items == [{"title": c["title"], "price": c["price"]} for c in EXPECTED_CARDS]


def test_optional_properties_written_as_any_of_with_null() -> None:
    schema = _schema(
        title={"anyOf": [{"type": "string"}, {"type": "null"}]},
        price={"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
    )
    items = extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=1)
    assert items == [{"title": "Claw Hammer", "price": 24.0}]


def test_draft_7_schemas_use_their_own_validator() -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", **CARD_SCHEMA}
    assert extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=50) == EXPECTED_CARDS


def test_an_invalid_schema_raises_value_error() -> None:
    with pytest.raises(ValueError, match="invalid JSON schema"):
        extract_items(
            URL, _page(""), {"type": "object", "properties": {"a": {"type": 5}}}, max_items=1
        )


def test_a_ref_to_another_document_raises_value_error() -> None:
    schema = _schema(title={"$ref": "https://schemas.test/title.json"})
    with pytest.raises(ValueError, match="invalid JSON schema"):
        extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=1)


# ---------------------------------------------------------------------------------------
# Coercion
# ---------------------------------------------------------------------------------------


def _coerced(value: Any, prop: dict[str, Any]) -> Any:
    """The value `extract_items` gives `prop` for a JSON-LD Thing whose `value` is `value`."""
    head = _jsonld({"@type": "Thing", "name": "x", "value": value})
    items = extract_items(
        URL, _page("", head), _schema(name={"type": "string"}, value=prop), max_items=1
    )
    return items[0].get("value", "<absent>") if items else "<no item>"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,299.00", 1299.0),
        ("$1,299.00", 1299.0),
        ("19,99 €", 19.99),
        ("1.299,00 €", 1299.0),
        ("1 299,50 kr", 1299.5),
        ("CHF 1'250.00", 1250.0),
        ("1.299", 1299.0),
        ("0.125", 0.125),
        ("12.5", 12.5),
        ("from $89.90 to $129.90", 89.9),
        ("-3.5", -3.5),
        (42, 42.0),
        (10**400, "<absent>"),
        ("Free", "<absent>"),
        (True, "<absent>"),
    ],
)
def test_numbers_from_text(raw: Any, expected: Any) -> None:
    assert _coerced(raw, {"type": "number"}) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("1,250", 1250), ("12 items", 12), (7.0, 7), ("4.5", "<absent>")]
)
def test_integers_from_text(raw: Any, expected: Any) -> None:
    assert _coerced(raw, {"type": "integer"}) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("Yes", True),
        ("In stock", True),
        ("https://schema.org/InStock", True),
        ("OutOfStock", False),
        ("no", False),
        ("maybe", "<absent>"),
    ],
)
def test_booleans_from_text(raw: Any, expected: Any) -> None:
    assert _coerced(raw, {"type": "boolean"}) == expected


@pytest.mark.parametrize(
    ("raw", "prop", "expected"),
    [
        (1299, {"type": "string"}, "1299"),
        (10**400, {"type": "string"}, "1" + "0" * 400),
        ("  two\n words ", {"type": "string"}, "two words"),
        ("March 3, 2024", {"type": "string", "format": "date"}, "2024-03-03"),
        ("2024-03-03T23:30:00-05:00", {"type": "string", "format": "date"}, "2024-03-03"),
        ("2024-03-03T10:00:00", {"type": "string", "format": "date-time"}, "2024-03-03T10:00:00Z"),
        (
            "Sun, 03 Mar 2024 10:00:00 +0100",
            {"type": "string", "format": "date-time"},
            "2024-03-03T10:00:00+01:00",
        ),
        ("yesterday", {"type": "string", "format": "date"}, "<absent>"),
        ("../img/a b.png", {"type": "string", "format": "uri"}, "https://site.test/img/a%20b.png"),
        ("javascript:void(0)", {"type": "string", "format": "uri"}, "<absent>"),
        ("mailto:sales@acme.test", {"type": "string", "format": "email"}, "sales@acme.test"),
    ],
)
def test_strings_and_formats(raw: Any, prop: dict[str, Any], expected: Any) -> None:
    assert _coerced(raw, prop) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("red, green ,blue", ["red", "green", "blue"]),
        (["red", 7], ["red", "7"]),
        ("red", ["red"]),
    ],
)
def test_arrays_of_strings(raw: Any, expected: list[str]) -> None:
    assert _coerced(raw, {"type": "array", "items": {"type": "string"}}) == expected


def test_arrays_of_numbers_are_not_split_on_commas() -> None:
    assert _coerced("19,99", {"type": "array", "items": {"type": "number"}}) == [19.99]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("in stock", "InStock"), ("https://schema.org/SoldOut", "SoldOut"), ("unknown", "<no item>")],
)
def test_enum_values_match_case_insensitively(raw: str, expected: str) -> None:
    prop = {"type": "string", "enum": ["InStock", "SoldOut"]}
    head = _jsonld({"@type": "Thing", "name": "x", "value": raw})
    schema = _schema(name={"type": "string"}, value=prop)
    schema["required"] = ["value"]
    items = extract_items(URL, _page("", head), schema, max_items=1)
    assert (items[0]["value"] if items else "<no item>") == expected


# ---------------------------------------------------------------------------------------
# Date filter
# ---------------------------------------------------------------------------------------


def _titles(items: list[dict[str, Any]]) -> list[str]:
    return [item["title"] for item in items]


def test_date_filter_keeps_items_inside_the_range() -> None:
    february_to_march = DateFilter(
        "published_at",
        datetime(2024, 2, 1),  # noqa: DTZ001 - naive bounds are UTC
        datetime(2024, 3, 31, 23, 59, 59),  # noqa: DTZ001
    )
    items = extract_items(
        DATED_ARTICLES_URL,
        DATED_ARTICLES,
        ARTICLE_LIST_SCHEMA,
        max_items=50,
        date_filter=february_to_march,
    )
    assert items == EXPECTED_ARTICLES[1:3]


def test_date_filter_bounds_are_inclusive_and_aware() -> None:
    # 2024-02-08T14:30:00+01:00 is 13:30 UTC; 2024-04-02T08:15:00Z is the upper bound.
    bounds = DateFilter(
        "published_at",
        datetime(2024, 2, 8, 13, 30, tzinfo=UTC),
        datetime(2024, 4, 2, 10, 15, tzinfo=timezone(timedelta(hours=2))),
    )
    items = extract_items(
        DATED_ARTICLES_URL, DATED_ARTICLES, ARTICLE_LIST_SCHEMA, max_items=50, date_filter=bounds
    )
    assert _titles(items) == _titles(EXPECTED_ARTICLES[1:4])


def test_date_filter_open_bounds() -> None:
    since_april = DateFilter("published_at", datetime(2024, 4, 1, tzinfo=UTC), None)
    until_january = DateFilter("published_at", None, datetime(2024, 1, 31, tzinfo=UTC))
    since = extract_items(
        DATED_ARTICLES_URL,
        DATED_ARTICLES,
        ARTICLE_LIST_SCHEMA,
        max_items=50,
        date_filter=since_april,
    )
    until = extract_items(
        DATED_ARTICLES_URL,
        DATED_ARTICLES,
        ARTICLE_LIST_SCHEMA,
        max_items=50,
        date_filter=until_january,
    )
    assert _titles(since) == _titles(EXPECTED_ARTICLES[3:])
    assert _titles(until) == _titles(EXPECTED_ARTICLES[:1])


def test_a_bare_date_covers_its_whole_day() -> None:
    noon = DateFilter(
        "date", datetime(2024, 3, 2, 12, tzinfo=UTC), datetime(2024, 3, 3, 6, tzinfo=UTC)
    )
    items = extract_items(CARD_GRID_URL, CARD_GRID, CARD_SCHEMA, max_items=50, date_filter=noon)
    assert _titles(items) == ["Forge Tongs", "Leather Apron"]


def test_date_filter_applies_before_the_cap() -> None:
    march = DateFilter("published_at", datetime(2024, 2, 1, tzinfo=UTC), None)
    items = extract_items(
        DATED_ARTICLES_URL, DATED_ARTICLES, ARTICLE_LIST_SCHEMA, max_items=2, date_filter=march
    )
    assert items == EXPECTED_ARTICLES[1:3]


def test_date_filter_drops_items_without_the_field() -> None:
    schema = copy.deepcopy(CARD_SCHEMA)
    del schema["properties"]["date"]
    any_time = DateFilter("date", None, None)
    assert extract_items(CARD_GRID_URL, CARD_GRID, schema, max_items=50, date_filter=any_time) == []


# ---------------------------------------------------------------------------------------
# Bounds on the work
# ---------------------------------------------------------------------------------------


def test_html_beyond_the_limit_is_not_read() -> None:
    padding = "<!--" + "x" * MAX_HTML_CHARS + "-->"
    html = CARD_GRID.replace("<main>", "<main>" + padding)
    assert extract_items(CARD_GRID_URL, html, CARD_SCHEMA, max_items=50) == []


def test_candidates_are_capped() -> None:
    rows = "".join(f'<li><a href="/t/{i}">Tool {i}</a></li>' for i in range(MAX_CANDIDATES + 500))
    schema = _schema(title={"type": "string"}, url={"type": "string", "format": "uri"})
    items = extract_items(URL, _page(f"<ul>{rows}</ul>"), schema, max_items=10_000)
    assert len(items) == MAX_CANDIDATES
    assert items[-1] == {
        "title": f"Tool {MAX_CANDIDATES - 1}",
        "url": f"https://site.test/t/{MAX_CANDIDATES - 1}",
    }


@pytest.mark.parametrize(
    "html", ["", "   ", "<html", "\x00\x01", "<?xml version='1.0' encoding='latin-1'?><p>x"]
)
def test_junk_html_gives_no_items_and_no_error(html: str) -> None:
    assert extract_items(URL, html, CARD_SCHEMA, max_items=5) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("March 3, 2024 10:00 PST", "2024-03-03T10:00:00-08:00"),
        ("3 March 2024 10:00 CET", "2024-03-03T10:00:00+01:00"),
        ("Sun, 03 Mar 2024 10:00:00 GMT", "2024-03-03T10:00:00Z"),
        ("3 March 2024 10:00 XYZT", "2024-03-03T10:00:00Z"),
    ],
)
def test_zone_abbreviations_in_dates(raw: str, expected: str) -> None:
    assert _coerced(raw, {"type": "string", "format": "date-time"}) == expected
