"""Real HTTP sites served on 127.0.0.1 for lookups to fetch, one per Host header."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from tests.support import scrape_pages

WORDPRESS_PAGE = """<!doctype html><html><head>
<meta name="generator" content="WordPress 6.4.2">
<link rel="stylesheet" href="/wp-content/themes/twentytwentyfour/style.css">
<script src="https://cdn.jsdelivr.net/npm/bootstrap@5.3.0/dist/js/bootstrap.bundle.min.js"></script>
<script src="/wp-includes/js/jquery/jquery.min.js?ver=3.7.1"></script>
</head><body><h1>Acme blog</h1></body></html>"""

COMPANY_PAGE = """<!doctype html><html><head>
<title>Acme Anvils</title>
<meta name="description" content="Acme Anvils makes dependable anvils for cartoon professionals.">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Organization", "name": "Acme Anvils",
 "email": "hello@acme.test", "telephone": "+1 415 555 0100",
 "sameAs": ["https://www.linkedin.com/company/acme-anvils", "https://twitter.com/acmeanvils"],
 "address": {"@type": "PostalAddress", "streetAddress": "1 Canyon Road",
             "addressLocality": "Desert City", "addressRegion": "AZ",
             "postalCode": "85001", "addressCountry": "US"}}
</script></head>
<body><main><h1>Acme Anvils</h1>
<p>Write to <a href="mailto:Sales@Acme.test?subject=hi">sales</a> or call
<a href="tel:+1 (415) 555-0199">our desk</a>.</p></main></body></html>"""

PERSON_PAGE = """<!doctype html><html><head><title>Jane Roe</title>
<meta property="og:description" content="Jane Roe is the head of anvil research at Acme Anvils.">
</head><body><h1>Jane Roe</h1>
<a href="https://github.com/janeroe">GitHub</a></body></html>"""


def rss_feed(*items: tuple[str, str, str]) -> str:
    """An RSS 2.0 feed of (guid, title, link) items."""
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>{link}</link></item>"
        for guid, title, link in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'


def atom_feed(*entries: tuple[str, str, str]) -> str:
    """An Atom feed of (id, title, link) entries."""
    body = "".join(
        f'<entry><id>{entry_id}</id><title>{title}</title><link href="{link}"/>'
        "<updated>2026-11-22T08:30:00Z</updated></entry>"
        for entry_id, title, link in entries
    )
    return f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{body}</feed>'


PLAIN_PAGE = "<!doctype html><html><head><title>plain</title></head><body>hello</body></html>"


@dataclass
class Site:
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    # Seconds to wait before answering: a hanging site.
    delay: float = 0.0
    content_type: str = "text/html; charset=utf-8"


@dataclass
class SiteServer:
    """Serves `sites` by Host header; counts requests per host."""

    sites: dict[str, Site]
    port: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    # Requested URLs without scheme ("host/path"), in order of arrival.
    requested: list[str] = field(default_factory=list)
    # Requests being answered right now, and the most ever at once, per host.
    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        host = (request.host or "").split(":")[0].lower()
        self.hits[host] = self.hits.get(host, 0) + 1
        self.requested.append(f"{host}{request.path}")
        site = self.sites.get(host)
        if site is None:
            return web.Response(status=404, text="unknown site")
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        self.peak[host] = max(self.peak.get(host, 0), self.in_flight[host])
        try:
            if site.delay:
                await asyncio.sleep(site.delay)
        finally:
            self.in_flight[host] -= 1
        headers = {"Content-Type": site.content_type, **site.headers}
        return web.Response(status=site.status, text=site.body, headers=headers)


def default_sites() -> dict[str, Site]:
    return {
        "wp.test": Site(
            WORDPRESS_PAGE,
            {"Server": "nginx/1.24.0", "X-Powered-By": "PHP/8.2.1"},
        ),
        "plain.test": Site(PLAIN_PAGE, {"Server": "Apache/2.4.58"}),
        "www.wp.test": Site(WORDPRESS_PAGE, {"Server": "nginx/1.24.0"}),
        "acme.test": Site(COMPANY_PAGE, {"Server": "nginx/1.24.0"}),
        "people.test": Site(PERSON_PAGE),
        "slow.test": Site(PLAIN_PAGE, delay=12.0),
        # Scraping fixtures (tests/support/scrape_pages.py).
        "shop.test": Site(scrape_pages.PRODUCT_LISTING_JSONLD),
        "table.test": Site(scrape_pages.TABLE_PAGE),
        "cards.test": Site(scrape_pages.CARD_GRID),
        "news.test": Site(scrape_pages.DATED_ARTICLES),
        "blog.test": Site(scrape_pages.ARTICLE_PAGE),
        "busy.test": Site(scrape_pages.ARTICLE_PAGE, delay=0.3),
        "api.test": Site('{"not": "html"}', content_type="application/json"),
        "gone.test": Site("<html><body>gone</body></html>", status=404),
        # Tests change this one between lookups to produce technology signals.
        "changing.test": Site(PLAIN_PAGE, {"Server": "Apache/2.4.58"}),
        # A company radar watches this one while a test changes it.
        "watched.test": Site(PLAIN_PAGE, {"Server": "Apache/2.4.58"}),
        # A contact radar watches this profile while a test changes it.
        "profile.test": Site(PERSON_PAGE),
        # The operator's feeds for industry radars (tests/support/stack.py).
        "newsfeed.test": Site(rss_feed(("old-1", "Anvils are old news", "http://acme.test/a"))),
        "jobsfeed.test": Site(atom_feed(("job-1", "Anvil welder", "http://acme.test/jobs/1"))),
    }


@contextlib.asynccontextmanager
async def serve_sites(sites: dict[str, Site]) -> AsyncIterator[SiteServer]:
    server = SiteServer(sites)
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()
