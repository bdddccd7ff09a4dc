"""API scopes (contract section 1)."""

from __future__ import annotations

LOOKUP_WRITE = "lookup.write"
INTELLIGENCE_READ = "intelligence.read"
SIGNALS_READ = "signals.read"
ENRICHMENT_READ = "enrichment.read"
ENRICHMENT_WRITE = "enrichment.write"
RADARS_WRITE = "radars.write"
RADARS_READ = "radars.read"
SCRAPE_WRITE = "scrape.write"
SCRAPE_READ = "scrape.read"

ALL_SCOPES: tuple[str, ...] = (
    LOOKUP_WRITE,
    INTELLIGENCE_READ,
    SIGNALS_READ,
    ENRICHMENT_READ,
    ENRICHMENT_WRITE,
    RADARS_WRITE,
    RADARS_READ,
    SCRAPE_WRITE,
    SCRAPE_READ,
)
