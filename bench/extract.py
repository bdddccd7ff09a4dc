"""Micro-benchmark of `batchplane.enrichment.extract.extract` on synthetic ~50 KB pages.

Run: .venv/bin/python bench/extract.py [--seconds 2]

Prints CPU ms per call (all fields) for a company home page with JSON-LD, the same page
with only cheap fields, and a page carrying schema.org RDFa (the one slow path). Pages
are synthesised here: the benchmark needs no network.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from batchplane.enrichment.extract import PageInput, extract

_LOREM = (
    "Our team ships fresh ideas every week. Read the latest stories about design, "
    "engineering &amp; product, with guides, interviews and the occasional recipe. "
)

_JSONLD = """<script type="application/ld+json">{"@context": "https://schema.org",
"@type": "Organization", "name": "Acme", "email": "info@acme.test",
"telephone": "+1-415-555-0100", "sameAs": ["https://www.linkedin.com/company/acme"],
"address": {"@type": "PostalAddress", "streetAddress": "1 Main St",
"addressLocality": "San Francisco", "postalCode": "94105", "addressCountry": "US"}}</script>"""

_FOOTER = """<footer><p>Contact: <a href="mailto:hello@acme.test">hello@acme.test</a>,
call <a href="tel:+14155550100">(415) 555-0100</a>. Invoices: billing@acme.test.</p>
<a href="https://twitter.com/acme">Twitter</a> <a href="https://github.com/acme">GitHub</a>
<a href="https://www.facebook.com/sharer/sharer.php?u=x">Share</a>
<p>&copy; 2012-2024 Acme, Inc. 500 Terry Francois St, San Francisco, CA 94158</p></footer>"""


def _cards(blocks: int) -> str:
    """Body markup typical of a CMS theme: nested divs, links, images, paragraphs."""
    return "".join(
        f'<div class="card col-md-4" data-index="{i}"><a href="/posts/{i}/">'
        f'<img loading="lazy" src="/media/{i}@2x.jpg" alt="Post {i}"></a>'
        f"<h3>Story number {i}</h3><p>{_LOREM * 2}</p></div>\n"
        for i in range(blocks)
    )


def _inline_script(size: int) -> str:
    chunk = 'window.__cfg={"api":"https://api.acme.test","user":"ops@acme.test","n":12345};'
    return "<script>" + chunk * (size // len(chunk)) + "</script>"


def company_page() -> str:
    head = f'<head><meta name="description" content="Acme builds robots.">{_JSONLD}'
    head += _inline_script(8_000) + "<style>" + ".a{color:red}" * 400 + "</style></head>"
    return f"<!DOCTYPE html><html>{head}<body><main>{_cards(80)}</main>{_FOOTER}</body></html>"


def rdfa_page() -> str:
    org = (
        '<div vocab="https://schema.org/" typeof="Organization"><span property="name">Acme'
        '</span><span property="telephone">+1 415 555 0100</span></div>'
    )
    return f"<!DOCTYPE html><html><head></head><body>{org}{_cards(90)}{_FOOTER}</body></html>"


def _measure(page: PageInput, fields: Iterable[str] | None, seconds: float) -> float:
    """CPU milliseconds per call, averaged over at least `seconds`."""
    extract(page, fields)  # warm caches (regex compilation, phonenumbers metadata)
    calls = 0
    start = time.process_time()
    while True:
        extract(page, fields)
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return elapsed / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    cases = [
        ("company, all fields", company_page(), None),
        ("company, emails+socials", company_page(), ["emails", "socials"]),
        ("schema.org RDFa, all fields", rdfa_page(), None),
    ]
    for label, html, fields in cases:
        page = PageInput(url="https://www.acme.test/", html=html)
        ms = _measure(page, fields, args.seconds)
        print(f"{label:30} {len(html) / 1024:5.1f} KB  {ms:7.2f} ms/page  {1000 / ms:7.0f} pages/s")
    print("company page result:", extract(PageInput("https://www.acme.test/", company_page())))


if __name__ == "__main__":
    main()
