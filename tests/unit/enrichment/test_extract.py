"""Tests of enrichment field extraction from single HTML pages."""

from __future__ import annotations

import logging
import random

import phonenumbers
import pytest

from batchplane.enrichment.extract import (
    FIELDS,
    MAX_HTML_CHARS,
    SUMMARY_MAX_CHARS,
    PageInput,
    extract,
)

COMPANY_HOME = """<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>Acme Robotics | Warehouse robots</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="Acme Robotics builds   autonomous warehouse robots
  for mid-sized retailers &amp; 3PLs.">
<meta property="og:description" content="Robots for warehouses.">
<link rel="stylesheet" href="/static/site.css">
<style>.hero{background:url(/img/hero@2x.png)} /* owner: webmaster@acme.test */</style>
<script type="application/ld+json">
{
  "@context": "https://schema.org",
  "@type": "Organization",
  "name": "Acme Robotics, Inc.",
  "url": "https://www.acme.test/",
  "logo": "https://www.acme.test/static/logo@2x.png",
  "description": "Autonomous warehouse robots.",
  "email": "mailto:Info@Acme.test",
  "telephone": "+1-415-555-0100",
  "sameAs": [
    "https://www.linkedin.com/company/acme-robotics/?trk=org",
    "http://twitter.com/acmerobotics"
  ],
  "address": {
    "@type": "PostalAddress",
    "streetAddress": "500 Terry   Francois St",
    "addressLocality": "San Francisco",
    "addressRegion": "CA",
    "postalCode": 94158,
    "addressCountry": {"@type": "Country", "name": "US"}
  }
}
</script>
<script>
  window.dataLayer = [{"contact": "tracking@acme.test", "phone": "+1 415 555 0111"}];
</script>
</head>
<body>
<header><nav><a href="/">Home</a> <a href="/about">About</a> <a href="/contact">Contact</a></nav></header>
<main>
  <h1>Robots that pick, pack and ship</h1>
  <p>Acme Robotics designs fleets of picking robots that slot into existing warehouses without new racking.</p>
  <img src="/static/hero@2x.png" alt="A robot">
</main>
<footer>
  <p>Press: <a href="mailto:press@acme.test">press@acme.test</a> &middot; Sales line (415) 555-0199</p>
  <p>Download our media kit (logo@2x.png, 2 MB).</p>
  <a href="https://www.linkedin.com/company/acme-old/">LinkedIn</a>
  <a href="https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fwww.acme.test">Share</a>
  <a href="https://www.facebook.com/AcmeRobotics/">Facebook</a>
  <a href="https://www.instagram.com/acme.robotics/?hl=en">Instagram</a>
  <a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ">Our demo video</a>
  <a href="https://www.youtube.com/@AcmeRobotics">YouTube</a>
  <a href="https://github.com/acme-robotics#readme">GitHub</a>
  <p>&copy; 2012-2024 Acme Robotics, Inc.</p>
</footer>
</body></html>
"""

MICRODATA_PAGE = """<!DOCTYPE html>
<html><head><title>Crumb &amp; Co. Bakery</title></head>
<body>
<div itemscope itemtype="https://schema.org/Bakery">
  <h1 itemprop="name">Crumb &amp; Co.</h1>
  <p itemprop="description">Sourdough and  pastries, baked daily in Shoreditch.</p>
  <p>Call <span itemprop="telephone">020 7946 0018</span> or write to
     <a itemprop="email" href="mailto:hello@crumb.co.uk">hello@crumb.co.uk</a>.</p>
  <div itemprop="address" itemscope itemtype="https://schema.org/PostalAddress">
    <span itemprop="streetAddress">12 Rivington Street</span>,
    <span itemprop="addressLocality">London</span>
    <span itemprop="postalCode">EC2A 3DU</span>,
    <meta itemprop="addressCountry" content="GB">
  </div>
  <a href="https://www.instagram.com/crumbandco">Instagram</a>
</div>
</body></html>
"""

CONTACTS_PAGE = """<!DOCTYPE html>
<html><head><title>Contact us</title></head>
<body>
<main>
  <h1>Contact</h1>
  <p>Questions?</p>
  <p>Our team answers every message within one business day, weekends included.<br>Write or call.</p>
  <ul>
    <li><a href="mailto:Sales@Acme.test?subject=hi">Email sales</a></li>
    <li><a href="mailto:jobs%40acme.test">Careers</a></li>
    <li><a href="tel:+1 (415) 555-0100">Call us</a></li>
    <li><a href="tel:+1-415-555-0123;ext=42">Support hotline</a></li>
  </ul>
  <table><tr><td>Support</td><td>support@acme.test</td></tr>
         <tr><td>Phone</td><td>+1 (415) 555-0100</td></tr>
         <tr><td>London office</td><td>+44 20 7946 0018</td></tr></table>
  <p>Template for partners: <code>name@example.com</code>, <code>you@mail.example</code>.</p>
  <p>Obfuscated: help&#64;acme.test. Retina assets: icon@2x.png, sprite@3x.webp.</p>
  <p>Invoice no. 2024-001-7783, order 99120034.</p>
</main>
</body></html>
"""

EMPTY_PAGE = """<!DOCTYPE html>
<html><head><title>Welcome</title><meta name="robots" content="noindex"></head>
<body><div id="root"></div><p>Loading…</p>
<script src="/static/app.js"></script></body></html>
"""

PERSON_PAGE = """<!DOCTYPE html>
<html><head>
<title>Jane Doe</title>
<meta property="og:title" content="Jane Doe — Staff Engineer">
<meta property="og:description" content="Staff engineer at Acme. I write about distributed systems, Rust and &quot;boring&quot; databases.">
<meta property="og:type" content="profile">
</head>
<body>
<article>
  <h1>Jane Doe</h1>
  <p>Hi! This paragraph is long enough to be a summary but og:description comes first.</p>
  <a href="https://twitter.com/intent/tweet?text=Read%20this&url=https%3A%2F%2Fjane.dev">Tweet this</a>
  <a href="https://www.linkedin.com/shareArticle?mini=true&url=https%3A%2F%2Fjane.dev">Share on LinkedIn</a>
  <a href="https://www.linkedin.com/sharing/share-offsite/?url=https%3A%2F%2Fjane.dev">Share</a>
  <a href="https://www.facebook.com/share.php?u=https%3A%2F%2Fjane.dev">Share on Facebook</a>
  <a href="https://x.com/janedoe?ref_src=twsrc#top">@janedoe</a>
  <a href="//www.linkedin.com/in/jane-doe-123/">LinkedIn</a>
  <a href="https://github.com/janedoe">GitHub</a>
  <a href="https://www.tiktok.com/@janedoe">TikTok</a>
  <a href="https://www.crunchbase.com/person/jane-doe">Crunchbase</a>
  <a href="https://mastodon.social/@jane">Mastodon</a>
  <a href="/blog/">Blog</a>
</article>
</body></html>
"""

BROKEN_JSONLD_PAGE = """<!DOCTYPE html>
<html><head>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "WebSite", broken</script>
<script type="application/ld+json">
<!-- generated by SEO plugin -->
{"@context": "https://schema.org", "@graph": [
  {"@type": "WebPage", "name": "Home"},
  {"@type": ["Organization", "Corporation"], "name": "Globex",
   "description": "Globex makes everything.",
   "telephone": "030 1234567",
   "sameAs": "https://www.crunchbase.com/organization/globex",
   "address": {"streetAddress": "Unter den Linden 1", "addressLocality": "Berlin",
               "addressCountry": "DE"}}
]}
</script>
<script type="application/ld+json">[1, "two", null, {"@type": 7}]</script>
<script type="application/ld+json"></script>
</head>
<body><p>Write to kontakt@globex.test.</p></body></html>
"""

HIDDEN_CONTACTS_PAGE = """<!DOCTYPE html>
<html><head>
<style>/* Designed by studio@design.test, call +1 415 555 0100 */ body{color:#333}</style>
<script>var support = "support@acme.test"; var tel = "+14155550100";</script>
<script type="application/json" id="__NEXT_DATA__">{"email":"next@acme.test","phone":"+44 20 7946 0018"}</script>
</head>
<body>
<noscript><p>Enable JavaScript or mail noscript@acme.test</p></noscript>
<template><p>Template contact: template@acme.test, +1 415 555 0123</p></template>
<p>Welcome.</p>
</body></html>
"""

RDFA_PAGE = """<!DOCTYPE html>
<html><head><title>Initech</title></head>
<body vocab="https://schema.org/">
<div typeof="Organization">
  <span property="name">Initech</span>
  <p property="description">Initech builds software for   the TPS-report era.</p>
  <span property="email">Info@Initech.test</span>
  <a property="sameAs" href="https://www.linkedin.com/company/initech">LinkedIn</a>
  <div property="address" typeof="PostalAddress">
    <span property="streetAddress">4120 Freidrich Lane</span>
    <span property="addressLocality">Austin</span>
    <span property="addressRegion">TX</span>
  </div>
</div>
</body></html>
"""


def _extract(url: str, html: str, country_hint: str | None = None) -> dict[str, object]:
    return extract(PageInput(url=url, html=html, country_hint=country_hint))


def test_company_home_page_with_json_ld() -> None:
    assert _extract("https://www.acme.test/", COMPANY_HOME) == {
        "emails": ["info@acme.test", "press@acme.test"],
        "phones": ["+14155550100", "+14155550199"],
        "summary": "Acme Robotics builds autonomous warehouse robots for mid-sized retailers & 3PLs.",
        "socials": {
            "linkedin": "https://www.linkedin.com/company/acme-robotics",
            "twitter": "https://twitter.com/acmerobotics",
            "facebook": "https://www.facebook.com/AcmeRobotics",
            "instagram": "https://www.instagram.com/acme.robotics",
            "youtube": "https://www.youtube.com/@AcmeRobotics",
            "github": "https://github.com/acme-robotics",
        },
        "address": {
            "streetAddress": "500 Terry Francois St",
            "addressLocality": "San Francisco",
            "addressRegion": "CA",
            "postalCode": "94158",
            "addressCountry": "US",
        },
    }


def test_microdata_page_reads_national_numbers_in_the_address_country() -> None:
    # The host is a .com, so the region can only come from the microdata addressCountry.
    assert _extract("https://crumb.com/", MICRODATA_PAGE) == {
        "emails": ["hello@crumb.co.uk"],
        "phones": ["+442079460018"],
        "summary": "Sourdough and pastries, baked daily in Shoreditch.",
        "socials": {"instagram": "https://www.instagram.com/crumbandco"},
        "address": {
            "streetAddress": "12 Rivington Street",
            "addressLocality": "London",
            "postalCode": "EC2A 3DU",
            "addressCountry": "GB",
        },
    }


def test_visible_text_and_link_contacts() -> None:
    assert _extract("https://www.acme.test/contact", CONTACTS_PAGE) == {
        "emails": ["help@acme.test", "jobs@acme.test", "sales@acme.test", "support@acme.test"],
        "phones": ["+14155550100", "+14155550123", "+442079460018"],
        "summary": "Our team answers every message within one business day, weekends included. "
        "Write or call.",
        "socials": None,
        "address": None,
    }


def test_page_with_nothing_gives_none_for_every_field() -> None:
    assert _extract("https://app.acme.test/", EMPTY_PAGE) == dict.fromkeys(FIELDS)


@pytest.mark.parametrize("html", ["", "   ", "\x00\x01garbage<<<>>>", "<html>", "<?xml?><p>"])
def test_degenerate_html_never_raises(html: str) -> None:
    assert _extract("https://acme.test/", html) == dict.fromkeys(FIELDS)


def test_person_profile_page() -> None:
    assert _extract("https://jane.dev/about", PERSON_PAGE) == {
        "emails": None,
        "phones": None,
        "summary": 'Staff engineer at Acme. I write about distributed systems, Rust and "boring" '
        "databases.",
        "socials": {
            "twitter": "https://x.com/janedoe",
            "linkedin": "https://www.linkedin.com/in/jane-doe-123",
            "github": "https://github.com/janedoe",
            "tiktok": "https://www.tiktok.com/@janedoe",
            "crunchbase": "https://www.crunchbase.com/person/jane-doe",
        },
        "address": None,
    }


@pytest.mark.parametrize(
    "href",
    [
        "https://twitter.com/intent/tweet?text=hi",
        "https://x.com/share?url=https%3A%2F%2Facme.test",
        "https://www.facebook.com/sharer/sharer.php?u=x",
        "https://www.facebook.com/sharer.php?u=x",
        "https://www.facebook.com/dialog/share?app_id=1",
        "https://www.linkedin.com/shareArticle?mini=true&url=x",
        "https://www.linkedin.com/sharing/share-offsite/?url=x",
        "https://pinterest.com/pin/create/button/?url=x",
        "https://www.youtube.com/watch?v=abc",
        "https://www.linkedin.com/feed/",
        "https://twitter.com/",
        "https://www.instagram.com/p/Cx1/",
        "mailto:someone@twitter.com",
        "https://nottwitter.com/acme",
    ],
)
def test_share_and_non_profile_links_are_ignored(href: str) -> None:
    html = f'<html><body><a href="{href}">link</a></body></html>'
    assert extract(PageInput("https://acme.test/", html), ["socials"]) == {"socials": None}


def test_malformed_json_ld_block_does_not_break_extraction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The German number is national: its region comes from the schema.org addressCountry
    # (an untyped address node); the host's ccTLD ".test" gives none.
    with caplog.at_level(logging.DEBUG, logger="batchplane.enrichment.extract"):
        result = _extract("https://globex.test/", BROKEN_JSONLD_PAGE)
    assert result == {
        "emails": ["kontakt@globex.test"],
        "phones": ["+49301234567"],
        "summary": "Globex makes everything.",
        "socials": {"crunchbase": "https://www.crunchbase.com/organization/globex"},
        "address": {
            "streetAddress": "Unter den Linden 1",
            "addressLocality": "Berlin",
            "addressCountry": "DE",
        },
    }
    assert "bad JSON-LD block" in caplog.text


def test_script_style_noscript_and_template_contents_are_not_mined() -> None:
    assert _extract("https://acme.test/", HIDDEN_CONTACTS_PAGE) == {
        "emails": None,
        "phones": None,
        "summary": None,
        "socials": None,
        "address": None,
    }


def test_schema_org_rdfa() -> None:
    assert _extract("https://initech.test/", RDFA_PAGE) == {
        "emails": ["info@initech.test"],
        "phones": None,
        "summary": "Initech builds software for the TPS-report era.",
        "socials": {"linkedin": "https://www.linkedin.com/company/initech"},
        "address": {
            "streetAddress": "4120 Freidrich Lane",
            "addressLocality": "Austin",
            "addressRegion": "TX",
        },
    }


@pytest.mark.parametrize(
    ("url", "hint", "expected"),
    [
        ("https://firma.de/", None, ["+49301234567"]),  # ccTLD
        ("https://firma.com/", "DE", ["+49301234567"]),  # hint
        ("https://firma.co.uk/", "de", ["+49301234567"]),  # hint beats ccTLD
        ("https://firma.io/", None, None),  # vanity ccTLD: falls back to US, not valid there
        ("https://firma.com/", None, None),  # US default
    ],
)
def test_phone_region(url: str, hint: str | None, expected: list[str] | None) -> None:
    html = "<html><body><p>Telefon: 030 1234567</p></body></html>"
    assert extract(PageInput(url, html, country_hint=hint), ["phones"]) == {"phones": expected}


def test_national_numbers_default_to_us_and_international_ones_parse_anywhere() -> None:
    html = "<p>Call (415) 555-0100, Paris +33 1 42 68 53 00.</p>"
    assert extract(PageInput("https://acme.com/", html), ["phones"]) == {
        "phones": ["+14155550100", "+33142685300"]
    }


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
def test_phone_windows_find_what_the_matcher_finds_in_the_whole_text(region: str) -> None:
    pieces = [
        "Call +1 (415) 555-0100 ext. 12 today",
        "or (415) 555-0199.",
        "Fax:+44 20 7946 0018",
        "Berlin 030 1234567, Hamburg 040-1234567",
        "+1 415 555 0123+1 415 555 0124",
        "Founded 2012\u20132024, tel 415\u2013555\u20130142, order 2024-001-7783, version 10.4.3, SKU A1234567B",
        "ISBN 978-3-16-148410-0 phone:02079460018",
        "+33\u00a01\u00a042\u00a068\u00a053\u00a000 and 0800 123 4567",
    ]
    rng = random.Random(region)
    filler = "Lorem ipsum dolor sit amet, 12 consectetur 7 adipiscing elit. "
    for _ in range(30):
        text = " ".join(
            rng.choice(pieces) if rng.random() < 0.4 else filler * rng.randint(0, 3)
            for _ in range(12)
        )
        whole = [
            phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
            for m in phonenumbers.PhoneNumberMatcher(text, region)
        ]
        html = f"<p>{text}</p>"
        got = extract(PageInput("https://acme.com/", html, country_hint=region), ["phones"])
        assert got["phones"] == (list(dict.fromkeys(whole)) or None), text


def test_email_validation_rejects_malformed_and_reserved_addresses() -> None:
    html = """<html><body>
    <a href="mailto:">empty</a>
    <a href="mailto:not-an-address">bad</a>
    <a href="mailto:a..b@acme.test">double dot</a>
    <a href="mailto:first@acme.test,second@acme.test?cc=third@acme.test">two</a>
    <a href="mailto:info@example.org">reserved</a>
    <a href="mailto:info@shop.example.com">reserved subdomain</a>
    <a href="mailto:root@localhost">no TLD</a>
    <p>x@y, @handle, user@host.invalid, a@b.c, me@acme.test.</p>
    </body></html>"""
    assert extract(PageInput("https://acme.test/", html), ["emails"]) == {
        "emails": ["first@acme.test", "me@acme.test", "second@acme.test"]
    }


def test_summary_falls_back_in_order() -> None:
    paragraph = "A paragraph that is comfortably longer than sixty characters of prose."
    org = '{"@type": "Organization", "description": "From JSON-LD."}'
    with_og = f'<meta property="og:description" content="From OG."><p>{paragraph}</p>'
    with_schema = f'<script type="application/ld+json">{org}</script><p>{paragraph}</p>'
    body_only = f"<div><p>Too short.</p><p>{paragraph}</p></div>"
    for html, expected in [
        (with_og, "From OG."),
        (with_schema, "From JSON-LD."),
        (body_only, paragraph),
    ]:
        assert extract(PageInput("https://acme.test/", html), ["summary"]) == {"summary": expected}


def test_summary_prefers_main_content_over_earlier_body_paragraphs() -> None:
    nav = (
        "<nav><p>" + "Menu item and another menu item and yet another menu item " * 2 + "</p></nav>"
    )
    main = "<main><p>The real introduction to the company, long enough to be used here.</p></main>"
    result = extract(PageInput("https://acme.test/", nav + main), ["summary"])
    assert result == {
        "summary": "The real introduction to the company, long enough to be used here."
    }


def test_summary_is_capped_on_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    html = f'<meta name="description" content="{words}">'
    summary = extract(PageInput("https://acme.test/", html), ["summary"])["summary"]
    assert isinstance(summary, str)
    assert len(summary) <= SUMMARY_MAX_CHARS
    assert summary.endswith("…")
    assert summary[:-1] in words
    assert words[len(summary) - 1] == " "  # the cut falls between two words


def test_xhtml_with_an_xml_encoding_declaration_still_yields_structured_data() -> None:
    html = (
        '<?xml version="1.0" encoding="iso-8859-1"?>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body>'
        '<div itemscope="itemscope" itemtype="https://schema.org/PostalAddress">'
        '<span itemprop="addressLocality">Paris</span>'
        '<span itemprop="addressCountry">FR</span></div></body></html>'
    )
    assert extract(PageInput("https://acme.test/", html), ["address"]) == {
        "address": {"addressLocality": "Paris", "addressCountry": "FR"}
    }


def test_fields_subset_keeps_request_order_and_rejects_unknown_names() -> None:
    page = PageInput("https://www.acme.test/", COMPANY_HOME)
    result = extract(page, ["address", "emails", "address"])
    assert list(result) == ["address", "emails"]
    assert result["emails"] == ["info@acme.test", "press@acme.test"]
    with pytest.raises(ValueError, match="technologies"):
        extract(page, ["emails", "technologies"])


def test_only_the_first_megabyte_is_parsed() -> None:
    filler = "<p>" + "x" * (MAX_HTML_CHARS + 10) + "</p>"
    html = f"<html><body><p>early@acme.test</p>{filler}<p>late@acme.test</p></body></html>"
    assert extract(PageInput("https://acme.test/", html), ["emails"]) == {
        "emails": ["early@acme.test"]
    }
