"""Micro-benchmark of `batchplane.scrape.extract.extract_items` on the test fixture pages.

Run: .venv/bin/python bench/scrape_extract.py [--seconds 1]

Prints CPU ms per call for each page of `tests/support/scrape_pages.py` with its schema,
then for two synthetic worst cases: a ~1 MB listing of 2,500 cards (the candidate cap
applies) and the seed schema on a ~1 MB article with no structure at all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from tests.support.scrape_pages import CARD_SCHEMA, PAGES, SEED_SCHEMA

from batchplane.scrape.extract import extract_items

_CARD = (
    '<div class="card deal"><img src="/img/{i}.jpg" alt=""><h3 class="card-title">Tool {i}</h3>'
    '<a class="more" href="/deals/{i}">View deal</a><span class="price">${i}.99</span>'
    '<time datetime="2024-03-01">1 March</time><p>{lorem}</p></div>\n'
)
_LOREM = "Forged steel, hand finished, with a lifetime warranty and free returns. " * 3


def big_listing() -> str:
    cards = "".join(_CARD.format(i=i, lorem=_LOREM) for i in range(2500))
    return f"<!doctype html><html><body><main><div class='grid'>{cards}</div></main></body></html>"


def big_article() -> str:
    paragraphs = "".join(f"<p>{_LOREM} Paragraph {i}.</p>" for i in range(4000))
    article = f"<article><h1>Long read</h1>{paragraphs}</article>"
    return f"<!doctype html><html><body>{article}</body></html>"


def _measure(url: str, html: str, schema: dict[str, Any], seconds: float) -> tuple[float, int]:
    """(CPU milliseconds per call averaged over at least `seconds`, items returned)."""
    items = extract_items(url, html, schema, max_items=5000)  # warm caches
    calls = 0
    start = time.process_time()
    while True:
        extract_items(url, html, schema, max_items=5000)
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return elapsed / calls * 1000, len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    cases = [(name, url, html, schema) for name, url, html, schema, _ in PAGES]
    cases.append(("2,500 cards (capped)", "https://x.test/", big_listing(), CARD_SCHEMA))
    cases.append(("long article, seed schema", "https://x.test/", big_article(), SEED_SCHEMA))
    for name, url, html, schema in cases:
        ms, count = _measure(url, html, schema, args.seconds)
        size = len(html) / 1024
        print(f"{name:28} {size:7.1f} KB  {count:5d} items  {ms:8.2f} ms/page")


if __name__ == "__main__":
    main()
