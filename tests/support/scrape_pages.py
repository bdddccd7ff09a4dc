"""Realistic pages and schemas for the scrape extractor (seed 004).

Unit tests extract from these strings directly; end-to-end tests can serve the same pages
(see `sites.py`) and expect the same items. Each page comes with the schema it is meant
for and, in `EXPECTED`, the items `extract_items` returns for it with a generous cap.
"""

from __future__ import annotations

from typing import Any, Final

PRODUCT_LISTING_URL: Final = "https://shop.acme.test/c/anvils"
TABLE_PAGE_URL: Final = "https://docs.acme.test/catalogue/price-list"
CARD_GRID_URL: Final = "https://outlet.acme.test/deals/"
DATED_ARTICLES_URL: Final = "https://blog.acme.test/engineering/"
ARTICLE_PAGE_URL: Final = "https://blog.acme.test/engineering/faster-builds"

# A category page of a shop: JSON-LD @graph with site furniture, the publisher and an
# ItemList of 5 Products, a broken JSON-LD block from a tracking plugin, and the same
# products as visible cards (the cards carry less than the JSON-LD).
PRODUCT_LISTING_JSONLD: Final = """<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>Anvils | Acme Shop</title>
<meta property="og:title" content="Anvils">
<meta property="og:type" content="website">
<meta property="og:url" content="https://shop.acme.test/c/anvils">
<script type="application/ld+json">
{
  "@context": "https://schema.org",
  "@graph": [
    {"@type": "WebSite", "@id": "https://shop.acme.test/#website", "name": "Acme Shop",
     "url": "https://shop.acme.test/",
     "potentialAction": {"@type": "SearchAction",
                         "target": "https://shop.acme.test/search?q={q}",
                         "query-input": "required name=q"}},
    {"@type": "Organization", "@id": "https://shop.acme.test/#org", "name": "Acme Inc.",
     "url": "https://shop.acme.test/", "logo": "https://shop.acme.test/logo.png"},
    {"@type": "BreadcrumbList", "itemListElement": [
      {"@type": "ListItem", "position": 1, "name": "Home", "item": "https://shop.acme.test/"},
      {"@type": "ListItem", "position": 2, "name": "Anvils",
       "item": "https://shop.acme.test/c/anvils"}]},
    {"@type": "CollectionPage", "@id": "https://shop.acme.test/c/anvils", "name": "Anvils",
     "mainEntity": {
       "@type": "ItemList",
       "numberOfItems": 5,
       "itemListElement": [
         {"@type": "ListItem", "position": 1, "item": {
           "@type": "Product", "name": "Classic Anvil 50 kg", "sku": "ANV-050",
           "url": "/p/classic-anvil-50",
           "image": "https://cdn.acme.test/img/anv-050.jpg",
           "brand": {"@type": "Brand", "name": "Acme"},
           "offers": {"@type": "Offer", "price": "1,299.00", "priceCurrency": "USD",
                      "availability": "https://schema.org/InStock"}}},
         {"@type": "ListItem", "position": 2, "item": {
           "@type": "Product", "name": "Travel Anvil 5 kg", "sku": "ANV-005",
           "url": "/p/travel-anvil-5",
           "image": ["https://cdn.acme.test/img/anv-005.jpg",
                     "https://cdn.acme.test/img/anv-005-side.jpg"],
           "brand": {"@type": "Brand", "name": "Acme"},
           "offers": {"@type": "Offer", "price": 149, "priceCurrency": "USD",
                      "availability": "https://schema.org/OutOfStock"}}},
         {"@type": "ListItem", "position": 3, "item": {
           "@type": "Product", "name": "Blacksmith Anvil 120 kg", "sku": "ANV-120",
           "url": "https://shop.acme.test/p/blacksmith-anvil-120",
           "image": {"@type": "ImageObject", "url": "https://cdn.acme.test/img/anv-120.jpg"},
           "brand": "Forge & Co",
           "offers": [{"@type": "Offer", "price": "2499.5", "priceCurrency": "USD",
                       "availability": "http://schema.org/InStock"},
                      {"@type": "Offer", "price": "2299.5", "priceCurrency": "USD",
                       "availability": "http://schema.org/OutOfStock"}]}},
         {"@type": "ListItem", "position": 4, "item": {
           "@type": "Product", "name": "Jeweller's Anvil", "sku": "ANV-J01",
           "url": "/p/jewellers-anvil",
           "offers": {"@type": "AggregateOffer", "lowPrice": "89.90", "highPrice": "129.90",
                      "priceCurrency": "USD", "offerCount": 3}}},
         {"@type": "ListItem", "position": 5, "item": {
           "@type": "Product", "name": "Anvil Stand", "sku": "STD-001",
           "url": "/p/anvil-stand",
           "offers": {"@type": "Offer", "price": "64.00", "priceCurrency": "USD",
                      "availability": "https://schema.org/InStock"}}}
       ]}}
  ]
}
</script>
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "tracking pixel", "offers": {
</script>
</head>
<body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/c/anvils">Anvils</a></li>
<li><a href="/c/hammers">Hammers</a></li></ul></nav></header>
<main>
<h1>Anvils</h1>
<div class="products">
  <div class="product-card"><a href="/p/classic-anvil-50"><h2>Classic Anvil 50 kg</h2></a>
    <span class="price">$1,299.00</span></div>
  <div class="product-card"><a href="/p/travel-anvil-5"><h2>Travel Anvil 5 kg</h2></a>
    <span class="price">$149.00</span></div>
  <div class="product-card"><a href="/p/blacksmith-anvil-120"><h2>Blacksmith Anvil 120 kg</h2>
    </a><span class="price">$2,499.50</span></div>
  <div class="product-card"><a href="/p/jewellers-anvil"><h2>Jeweller's Anvil</h2></a>
    <span class="price">from $89.90</span></div>
  <div class="product-card"><a href="/p/anvil-stand"><h2>Anvil Stand</h2></a>
    <span class="price">$64.00</span></div>
</div>
</main>
<footer><p>&copy; 2024 Acme Inc.</p></footer>
</body></html>
"""

# A documentation page with a price list table (thead, a column with a unit in its
# header, <time> cells and plain-text dates) and a layout table without a header.
TABLE_PAGE: Final = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Price list 2024 - Acme docs</title></head>
<body>
<nav class="sidebar"><ul><li><a href="/catalogue/">Catalogue</a></li>
<li><a href="/catalogue/price-list">Price list</a></li></ul></nav>
<main>
<h1>Price list</h1>
<p>All prices exclude VAT. Stock is counted every night.</p>
<table class="price-list">
  <thead>
    <tr><th>Name</th><th>Price (USD)</th><th>SKU</th><th>Released</th><th>In stock</th></tr>
  </thead>
  <tbody>
    <tr><td><a href="/products/classic-anvil">Classic Anvil</a></td><td>$1,299.00</td>
        <td>ANV-050</td><td><time datetime="2021-03-14">March 14, 2021</time></td>
        <td>1,250</td></tr>
    <tr><td><a href="/products/travel-anvil">Travel Anvil</a></td><td>$149</td>
        <td>ANV-005</td><td>2022-09-01</td><td>12</td></tr>
    <tr><td><a href="/products/blacksmith-anvil">Blacksmith Anvil</a></td><td>$2,499.50</td>
        <td>ANV-120</td><td>Jan 5, 2023</td><td>0</td></tr>
    <tr><td><a href="/products/anvil-stand">Anvil Stand</a></td><td>$64.00</td>
        <td>STD-001</td><td><time datetime="2023-11-30T08:00:00Z">Nov 30, 2023</time></td>
        <td>37</td></tr>
  </tbody>
</table>
<table class="layout"><tr><td>Questions?</td><td><a href="/contact">Contact sales</a></td></tr>
</table>
</main>
</body></html>
"""

# An outlet page: 6 deal cards, no structured data except OpenGraph, prices in several
# currencies and formats, and a menu and footer links that must not become items.
CARD_GRID: Final = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Deals of the week - Acme Outlet</title>
<meta property="og:title" content="Deals of the week">
<meta property="og:description" content="Six tools at outlet prices, this week only.">
<meta property="og:image" content="https://outlet.acme.test/img/deals.jpg">
</head>
<body>
<header class="site-header"><ul class="menu"><li><a href="/">Outlet</a></li>
<li><a href="/deals/">Deals</a></li><li><a href="/help">Help</a></li></ul></header>
<main>
<h1>Deals of the week</h1>
<div class="grid">
  <div class="card deal">
    <img src="/img/hammer.jpg" alt="">
    <h3 class="card-title">Claw Hammer</h3>
    <a class="more" href="/deals/claw-hammer">View deal</a>
    <span class="price">$24.00</span>
    <time datetime="2024-03-01">1 March</time>
  </div>
  <div class="card deal">
    <img src="/img/tongs.jpg" alt="">
    <h3 class="card-title">Forge Tongs</h3>
    <a class="more" href="/deals/forge-tongs">View deal</a>
    <span class="price">19,99 &euro;</span>
    <time datetime="2024-03-02">2 March</time>
  </div>
  <div class="card deal">
    <img src="/img/apron.jpg" alt="">
    <h3 class="card-title">Leather Apron</h3>
    <a class="more" href="https://outlet.acme.test/deals/leather-apron">View deal</a>
    <span class="price">&pound;1,050.00</span>
    <time datetime="2024-03-03">3 March</time>
  </div>
  <div class="card deal">
    <img data-src="/img/chisel.jpg" alt="">
    <h3 class="card-title">Cold Chisel</h3>
    <a class="more" href="/deals/cold-chisel">View deal</a>
    <span class="price">1.299,00 &euro;</span>
    <time datetime="2024-03-04">4 March</time>
  </div>
  <div class="card deal">
    <img src="/img/gloves.jpg" alt="">
    <h3 class="card-title">Heat Gloves</h3>
    <a class="more" href="/deals/heat-gloves">View deal</a>
    <span class="price">CHF 12.50</span>
    <time datetime="2024-03-05">5 March</time>
  </div>
  <div class="card deal">
    <img src="/img/brush.jpg" alt="">
    <h3 class="card-title">Wire Brush</h3>
    <a class="more" href="/deals/wire-brush">View deal</a>
    <span class="price">$5</span>
    <time datetime="2024-03-06">6 March</time>
  </div>
</div>
</main>
<footer><ul><li><a href="/terms">Terms</a></li><li><a href="/privacy">Privacy</a></li></ul>
</footer>
</body></html>
"""

# A blog index: 5 posts in a list, January to May 2024, with <time datetime> in several
# ISO shapes (offset, Z, date only), plus navigation that must not become items.
DATED_ARTICLES: Final = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Engineering - Acme Blog</title>
<meta property="og:title" content="Acme Engineering Blog">
<meta property="og:type" content="website">
</head>
<body>
<header><nav><ul><li><a href="/">Blog</a></li><li><a href="/engineering/">Engineering</a></li>
<li><a href="/about">About</a></li></ul></nav></header>
<main>
<h1>Engineering</h1>
<ul class="post-list">
  <li class="post">
    <h2><a href="/engineering/kafka-in-production">Running Kafka in production</a></h2>
    <time datetime="2024-01-15T09:00:00Z">January 15, 2024</time>
    <p class="excerpt">What two years of consumer groups taught us.</p>
  </li>
  <li class="post">
    <h2><a href="/engineering/postgres-16">Upgrading to PostgreSQL 16</a></h2>
    <time datetime="2024-02-08T14:30:00+01:00">February 8, 2024</time>
    <p class="excerpt">A zero-downtime upgrade, step by step.</p>
  </li>
  <li class="post">
    <h2><a href="/engineering/envoy-gateway">Why we put Envoy in front</a></h2>
    <time datetime="2024-03-21">March 21, 2024</time>
    <p class="excerpt">Transcoding JSON to gRPC at the edge.</p>
  </li>
  <li class="post">
    <h2><a href="/engineering/rate-limits">GCRA rate limits</a></h2>
    <time datetime="2024-04-02T08:15:00Z">April 2, 2024</time>
    <p class="excerpt">Fair limits without a token bucket per client.</p>
  </li>
  <li class="post">
    <h2><a href="/engineering/faster-builds">How we cut our build times in half</a></h2>
    <time datetime="2024-05-30T17:45:00Z">May 30, 2024</time>
    <p class="excerpt">Caching, sharding and fewer containers.</p>
  </li>
</ul>
<ol class="pagination"><li><a href="?page=1">1</a></li><li><a href="?page=2">2</a></li></ol>
</main>
<footer><p>&copy; 2024 Acme Inc.</p></footer>
</body></html>
"""

# One article: site chrome around it, a byline in the article's header, a bullet list in
# the text, a related-posts sidebar, and the publisher as JSON-LD.
ARTICLE_PAGE: Final = """<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>How we cut our build times in half | Acme Engineering</title>
<meta name="description" content="Caching, sharding and fewer containers.">
<meta property="og:title" content="How we cut our build times in half">
<meta property="og:type" content="article">
<meta property="article:published_time" content="2024-05-30T17:45:00Z">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Organization", "name": "Acme Inc.",
 "url": "https://www.acme.test/", "description": "Acme builds tools for blacksmiths."}
</script>
</head>
<body>
<header><nav><ul><li><a href="/">Blog</a></li><li><a href="/engineering/">Engineering</a></li>
<li><a href="/about">About</a></li></ul></nav></header>
<main>
<article>
  <header>
    <h1>How we cut our build times in half</h1>
    <p class="byline">By Jane Roe, <time datetime="2024-05-30">May 30, 2024</time></p>
  </header>
  <p>Our CI pipeline took 24 minutes per change.<br>Developers waited, context switched
     and lost focus.</p>
  <p>Three changes brought it down to 11 minutes:</p>
  <ul>
    <li>a shared build cache,</li>
    <li>test sharding across four runners,</li>
    <li>and fewer, smaller containers.</li>
  </ul>
  <p>The cache alone saved <strong>7 minutes</strong>.</p>
</article>
<aside class="related"><h2>Related posts</h2><ul>
  <li><a href="/engineering/kafka-in-production">Running Kafka in production</a></li>
  <li><a href="/engineering/rate-limits">GCRA rate limits</a></li></ul></aside>
</main>
<footer><p>&copy; 2024 Acme Inc.</p></footer>
</body></html>
"""

PRODUCT_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "price": {"type": "number"},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
        "sku": {"type": "string"},
        "in_stock": {"type": "boolean", "x-source": ["availability"]},
        "image": {"type": "string", "format": "uri"},
        "brand": {"type": "string"},
    },
    "required": ["name", "url", "price"],
}

TABLE_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9A-Z]{3}$"},
        "released": {"type": "string", "format": "date"},
        "in_stock": {"type": "integer", "minimum": 0},
        "url": {"type": "string", "format": "uri"},
    },
    "required": ["name", "price", "sku"],
}

CARD_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "price": {"type": "number"},
        "currency": {"type": "string"},
        "date": {"type": "string", "format": "date"},
        "image": {"type": "string", "format": "uri"},
    },
    "required": ["title", "price"],
}

ARTICLE_LIST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "published_at": {"type": "string", "format": "date-time"},
        "summary": {"type": "string"},
    },
    "required": ["title", "url", "published_at"],
}

# Exactly the schema of the seed's example request.
SEED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "content": {"type": "string"}},
}

EXPECTED_PRODUCTS: Final[list[dict[str, Any]]] = [
    {
        "name": "Classic Anvil 50 kg",
        "url": "https://shop.acme.test/p/classic-anvil-50",
        "price": 1299.0,
        "currency": "USD",
        "sku": "ANV-050",
        "in_stock": True,
        "image": "https://cdn.acme.test/img/anv-050.jpg",
        "brand": "Acme",
    },
    {
        "name": "Travel Anvil 5 kg",
        "url": "https://shop.acme.test/p/travel-anvil-5",
        "price": 149.0,
        "currency": "USD",
        "sku": "ANV-005",
        "in_stock": False,
        "image": "https://cdn.acme.test/img/anv-005.jpg",
        "brand": "Acme",
    },
    {
        "name": "Blacksmith Anvil 120 kg",
        "url": "https://shop.acme.test/p/blacksmith-anvil-120",
        "price": 2499.5,
        "currency": "USD",
        "sku": "ANV-120",
        "in_stock": True,
        "image": "https://cdn.acme.test/img/anv-120.jpg",
        "brand": "Forge & Co",
    },
    {
        "name": "Jeweller's Anvil",
        "url": "https://shop.acme.test/p/jewellers-anvil",
        "price": 89.9,
        "currency": "USD",
        "sku": "ANV-J01",
    },
    {
        "name": "Anvil Stand",
        "url": "https://shop.acme.test/p/anvil-stand",
        "price": 64.0,
        "currency": "USD",
        "sku": "STD-001",
        "in_stock": True,
    },
]

EXPECTED_TABLE_ROWS: Final[list[dict[str, Any]]] = [
    {
        "name": "Classic Anvil",
        "price": 1299.0,
        "sku": "ANV-050",
        "released": "2021-03-14",
        "in_stock": 1250,
        "url": "https://docs.acme.test/products/classic-anvil",
    },
    {
        "name": "Travel Anvil",
        "price": 149.0,
        "sku": "ANV-005",
        "released": "2022-09-01",
        "in_stock": 12,
        "url": "https://docs.acme.test/products/travel-anvil",
    },
    {
        "name": "Blacksmith Anvil",
        "price": 2499.5,
        "sku": "ANV-120",
        "released": "2023-01-05",
        "in_stock": 0,
        "url": "https://docs.acme.test/products/blacksmith-anvil",
    },
    {
        "name": "Anvil Stand",
        "price": 64.0,
        "sku": "STD-001",
        "released": "2023-11-30",
        "in_stock": 37,
        "url": "https://docs.acme.test/products/anvil-stand",
    },
]


def _card(slug: str, title: str, price: float, currency: str, day: int) -> dict[str, Any]:
    image = "chisel" if slug == "cold-chisel" else slug.split("-")[-1]
    return {
        "title": title,
        "url": f"https://outlet.acme.test/deals/{slug}",
        "price": price,
        "currency": currency,
        "date": f"2024-03-0{day}",
        "image": f"https://outlet.acme.test/img/{image}.jpg",
    }


EXPECTED_CARDS: Final[list[dict[str, Any]]] = [
    _card("claw-hammer", "Claw Hammer", 24.0, "USD", 1),
    _card("forge-tongs", "Forge Tongs", 19.99, "EUR", 2),
    _card("leather-apron", "Leather Apron", 1050.0, "GBP", 3),
    _card("cold-chisel", "Cold Chisel", 1299.0, "EUR", 4),
    _card("heat-gloves", "Heat Gloves", 12.5, "CHF", 5),
    _card("wire-brush", "Wire Brush", 5.0, "USD", 6),
]

EXPECTED_ARTICLES: Final[list[dict[str, Any]]] = [
    {
        "title": "Running Kafka in production",
        "url": "https://blog.acme.test/engineering/kafka-in-production",
        "published_at": "2024-01-15T09:00:00Z",
        "summary": "What two years of consumer groups taught us.",
    },
    {
        "title": "Upgrading to PostgreSQL 16",
        "url": "https://blog.acme.test/engineering/postgres-16",
        "published_at": "2024-02-08T14:30:00+01:00",
        "summary": "A zero-downtime upgrade, step by step.",
    },
    {
        "title": "Why we put Envoy in front",
        "url": "https://blog.acme.test/engineering/envoy-gateway",
        "published_at": "2024-03-21T00:00:00Z",
        "summary": "Transcoding JSON to gRPC at the edge.",
    },
    {
        "title": "GCRA rate limits",
        "url": "https://blog.acme.test/engineering/rate-limits",
        "published_at": "2024-04-02T08:15:00Z",
        "summary": "Fair limits without a token bucket per client.",
    },
    {
        "title": "How we cut our build times in half",
        "url": "https://blog.acme.test/engineering/faster-builds",
        "published_at": "2024-05-30T17:45:00Z",
        "summary": "Caching, sharding and fewer containers.",
    },
]

EXPECTED_ARTICLE: Final[list[dict[str, Any]]] = [
    {
        "title": "How we cut our build times in half",
        "content": (
            "Our CI pipeline took 24 minutes per change. Developers waited, context switched"
            " and lost focus. Three changes brought it down to 11 minutes: a shared build"
            " cache, test sharding across four runners, and fewer, smaller containers. The"
            " cache alone saved 7 minutes."
        ),
    }
]

# (name, url, page, schema, expected items): every fixture in one table.
PAGES: Final[list[tuple[str, str, str, dict[str, Any], list[dict[str, Any]]]]] = [
    (
        "product_listing_jsonld",
        PRODUCT_LISTING_URL,
        PRODUCT_LISTING_JSONLD,
        PRODUCT_SCHEMA,
        EXPECTED_PRODUCTS,
    ),
    ("table_page", TABLE_PAGE_URL, TABLE_PAGE, TABLE_SCHEMA, EXPECTED_TABLE_ROWS),
    ("card_grid", CARD_GRID_URL, CARD_GRID, CARD_SCHEMA, EXPECTED_CARDS),
    ("dated_articles", DATED_ARTICLES_URL, DATED_ARTICLES, ARTICLE_LIST_SCHEMA, EXPECTED_ARTICLES),
    ("article_page", ARTICLE_PAGE_URL, ARTICLE_PAGE, SEED_SCHEMA, EXPECTED_ARTICLE),
]
