"""Micro-benchmark of `FingerprintDatabase.detect` on a few realistic ~50 KB pages.

Run: .venv/bin/python bench/fingerprints.py [--seconds 2]

Prints load time, memory of the loaded database, and for each page pages/s and CPU
ms per page for the prefiltered matcher and for the brute-force path (every pattern
on every page). Pages are synthesised here: the benchmark needs no network.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

from batchplane.lookup.fingerprints import Detection, FingerprintDatabase, Page

_LOREM = (
    "Our team ships fresh ideas every week. Read the latest stories about design, "
    "engineering &amp; product, with guides, interviews and the occasional recipe. "
)


def _filler(kind: str, blocks: int) -> str:
    """Body markup typical of a CMS theme: nested divs, links, images, paragraphs."""
    parts = []
    for i in range(blocks):
        parts.append(
            f'<div class="{kind}-card col-md-4 mb-3" data-index="{i}">'
            f'<a href="/posts/{kind}-{i}/" class="card-link"><img loading="lazy" '
            f'src="/media/{kind}/{i}.jpg" alt="Post {i}" width="640" height="360"></a>'
            f'<h3 class="card-title">Story number {i}</h3><p>{_LOREM * 2}</p></div>\n'
        )
    return "".join(parts)


def _inline_app_script(size: int) -> str:
    """A minified-looking inline bundle: config objects and event wiring."""
    chunk = (
        "window.__cfg=window.__cfg||{};(function(w,d){var e=d.createElement('div');"
        "e.className='banner';w.__cfg.items=(w.__cfg.items||[]).concat([1,2,3]);"
        "d.addEventListener('DOMContentLoaded',function(){console.debug('ready')});"
        "})(window,document);\n"
    )
    return chunk * (size // len(chunk) + 1)


def wordpress_page() -> Page:
    """A WordPress blog on nginx/PHP with jQuery, Bootstrap, GA4 and cookies."""
    head = (
        '<!DOCTYPE html><html lang="en-US"><head><meta charset="UTF-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="WordPress 6.4.2">'
        '<meta property="og:image" content="https://blog.example.com/wp-content/uploads/2024/01/cover.jpg">'
        '<link rel="stylesheet" href="https://blog.example.com/wp-includes/css/dist/block-library/style.min.css?ver=6.4.2">'
        '<link rel="stylesheet" href="https://blog.example.com/wp-content/themes/astra/style.css?ver=4.5.0">'
        "<style>.wp-block-button__link{color:#fff}body{font-family:Georgia,serif}</style>"
        '<script src="https://blog.example.com/wp-includes/js/jquery/jquery.min.js?ver=3.7.1"></script>'
        '<script src="https://blog.example.com/wp-includes/js/jquery/jquery-migrate.min.js?ver=3.4.1"></script>'
        '<script src="https://cdn.jsdelivr.net/npm/bootstrap@5.3.0/dist/js/bootstrap.bundle.min.js"></script>'
        '<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABCDEF1234"></script>'
        "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
        "gtag('js',new Date());gtag('config','G-ABCDEF1234');</script>"
        '<script type="application/ld+json">{"@context":"https://schema.org","@type":"WebSite",'
        '"url":"https://blog.example.com/","name":"Example Blog"}</script>'
        "</head>"
    )
    body = (
        '<body class="home blog wp-custom-logo"><header class="site-header"><nav>'
        + "".join(f'<a href="/category/{c}/">{c.title()}</a>' for c in ("news", "guides", "food"))
        + "</nav></header><main>"
        + _filler("post", 78)
        + "</main><footer><p>Proudly powered by WordPress</p></footer>"
        + f"<script>{_inline_app_script(6000)}</script>"
        + '<script src="https://blog.example.com/wp-includes/js/wp-embed.min.js?ver=6.4.2"></script>'
        + '<script src="https://blog.example.com/wp-content/plugins/contact-form-7/includes/js/index.js?ver=5.8.4"></script>'
        + "</body></html>"
    )
    return Page(
        url="https://blog.example.com/",
        status=200,
        headers={
            "Server": "nginx/1.24.0",
            "X-Powered-By": "PHP/8.2.1",
            "Content-Type": "text/html; charset=UTF-8",
            "Link": '<https://blog.example.com/wp-json/>; rel="https://api.w.org/"',
            "Cache-Control": "max-age=600",
        },
        cookies={"PHPSESSID": "d41d8cd98f00b204", "_ga": "GA1.1.123.456"},
        html=head + body,
    )


def shopify_page() -> Page:
    """A Shopify storefront behind Cloudflare with several app scripts."""
    head = (
        '<!doctype html><html class="no-js" lang="en"><head><meta charset="utf-8">'
        '<meta name="theme-color" content="#111111">'
        '<link rel="preconnect" href="https://cdn.shopify.com" crossorigin>'
        '<link href="//shop.example.com/cdn/shop/t/12/assets/base.css?v=1234" rel="stylesheet">'
        '<script src="//shop.example.com/cdn/shop/t/12/assets/constants.js?v=5678" defer></script>'
        '<script src="//shop.example.com/cdn/shop/t/12/assets/global.js?v=9012" defer></script>'
        '<script src="https://cdn.shopify.com/s/trekkie.storefront.min.js" defer></script>'
        '<script src="https://static.klaviyo.com/onsite/js/klaviyo.js?company_id=AbC123"></script>'
        '<script>var Shopify = Shopify || {};Shopify.shop = "shop-example.myshopify.com";'
        'Shopify.theme = {"name":"Dawn","id":12,"role":"main"};</script>'
        "</head>"
    )
    body = (
        '<body class="template-index"><main id="MainContent">'
        + _filler("product", 82)
        + f"<script>{_inline_app_script(4000)}</script>"
        + "</main></body></html>"
    )
    return Page(
        url="https://shop.example.com/",
        status=200,
        headers={
            "Server": "cloudflare",
            "CF-RAY": "8a1b2c3d4e5f6a7b-FRA",
            "X-ShopId": "5551234",
            "X-Shopify-Stage": "production",
            "Content-Type": "text/html; charset=utf-8",
        },
        cookies={"_shopify_y": "abc", "_shopify_s": "def", "cart_currency": "EUR"},
        html=head + body,
    )


def nextjs_page() -> Page:
    """A Next.js/React marketing site on Vercel with a large __NEXT_DATA__ blob."""
    next_data = '{"props":{"pageProps":{"items":[' + ",".join(
        f'{{"id":{i},"title":"Item {i}","slug":"item-{i}"}}' for i in range(400)
    )
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charSet="utf-8"/>'
        '<meta name="next-head-count" content="12"/>'
        '<link rel="preload" href="/_next/static/css/a1b2c3d4e5f6.css" as="style"/>'
        '<script src="/_next/static/chunks/webpack-0123456789abcdef.js" defer=""></script>'
        '<script src="/_next/static/chunks/framework-fedcba9876543210.js" defer=""></script>'
        '<script src="/_next/static/chunks/main-1111222233334444.js" defer=""></script>'
        '<script src="/_next/static/chunks/pages/_app-5555666677778888.js" defer=""></script>'
        '<script src="https://www.googletagmanager.com/gtm.js?id=GTM-ABC123" async=""></script>'
        "</head>"
    )
    body = (
        '<body><div id="__next"><div class="layout_root__x1">'
        + _filler("feature", 55)
        + "</div></div>"
        + '<script id="__NEXT_DATA__" type="application/json">'
        + next_data
        + ']}},"page":"/","buildId":"abcDEF123"}</script></body></html>'
    )
    return Page(
        url="https://www.example.dev/",
        status=200,
        headers={
            "Server": "Vercel",
            "X-Powered-By": "Next.js",
            "X-Vercel-Id": "fra1::abcd-1234",
            "Content-Type": "text/html; charset=utf-8",
        },
        cookies={},
        html=head + body,
    )


def _measure(fn: Callable[[Page], list[Detection]], page: Page, seconds: float) -> float:
    """CPU seconds per call of `fn(page)`, averaged over at least `seconds` of CPU."""
    fn(page)  # warm caches (regex, attribute interning)
    calls = 0
    gc.collect()
    start = time.process_time()
    elapsed = 0.0
    while elapsed < seconds or calls < 3:
        fn(page)
        calls += 1
        elapsed = time.process_time() - start
    return elapsed / calls


def main() -> None:
    """Load the database, then time both matchers on each page."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per timing")
    args = parser.parse_args()

    tracemalloc.start()
    start = time.perf_counter()
    db = FingerprintDatabase.load()
    load_s = time.perf_counter() - start
    memory_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    stats = db.stats
    print(f"load: {load_s:.2f} s (with tracing), traced memory: {memory_mb:.1f} MB")
    print(
        f"technologies={stats.technologies} patterns={stats.patterns} "
        f"skipped={stats.skipped_patterns} always_run={dict(stats.always_run)}"
    )
    # Load again untraced: tracemalloc slows allocation-heavy code severalfold.
    start = time.perf_counter()
    db = FingerprintDatabase.load()
    print(f"load: {time.perf_counter() - start:.2f} s (untraced)")

    for name, page in (
        ("wordpress", wordpress_page()),
        ("shopify", shopify_page()),
        ("nextjs", nextjs_page()),
    ):
        found = db.detect(page)
        assert found == db._detect_exhaustive(page), name
        fast = _measure(db.detect, page, args.seconds)
        brute = _measure(db._detect_exhaustive, page, args.seconds)
        print(
            f"{name:9} {len(page.html) / 1024:5.1f} KB  "
            f"prefiltered: {1 / fast:7.0f} pages/s {fast * 1e3:6.2f} ms CPU  |  "
            f"brute force: {1 / brute:5.0f} pages/s {brute * 1e3:6.1f} ms CPU  |  "
            f"x{brute / fast:.0f}"
        )
        print("          " + ", ".join(f"{d.name} {d.version or ''}".strip() for d in found))


if __name__ == "__main__":
    main()
