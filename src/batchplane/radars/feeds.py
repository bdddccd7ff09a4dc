"""Industry radars: entries of the operator's RSS/Atom feeds, and which ones a radar reports.

Feeds are parsed by `feedparser` (RSS 0.9x/1.0/2.0, Atom 0.3/1.0, and the broken
real-world variants of each), which is why it is used rather than an XML parser.
Matching is a case-insensitive whole-word search of the keyword in the entry's
title and summary text, so "anvil" matches "Anvil maker hires" but not "anvilsmith".
"""

from __future__ import annotations

import calendar
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from selectolax.lexbor import LexborHTMLParser

from batchplane.core.deferred import deferred_import
from batchplane.lookup.domains import InvalidDomain, normalise_domain

# Only keyword radars read feeds: deferred so a processor whose monitor never scans a
# feed never loads feedparser (~13 MB).
if TYPE_CHECKING:
    import feedparser
else:
    feedparser = deferred_import("feedparser")

# What async callers await `deferred.loaded(*DEFERRED)` for before parsing.
DEFERRED = (feedparser,)

INDUSTRY_MENTION = "industry_mention"
JOB_OPENING = "job_opening"
INDUSTRY_NEWS = "industry_news"
SIGNAL_TYPES = frozenset({INDUSTRY_MENTION, JOB_OPENING, INDUSTRY_NEWS})

# radar_type -> (which feeds it scans, the signal type it records).
NEWS, JOBS = "news", "jobs"
SCANS: dict[str, tuple[str, str]] = {
    "industry_mentions": (NEWS, INDUSTRY_MENTION),
    "industry_job_openings": (JOBS, JOB_OPENING),
    "industry_news": (NEWS, INDUSTRY_NEWS),
}


class FeedUnreadable(Exception):
    """The body is not an RSS or Atom feed (nothing could be read from it)."""


@dataclass(frozen=True)
class FeedEntry:
    feed_url: str
    entry_id: str
    title: str
    link: str | None
    text: str
    published: datetime | None

    def mentions(self, keyword: str | None) -> bool:
        """True when `keyword` appears as a whole word; every entry matches no keyword."""
        if not keyword:
            return True
        pattern = rf"(?<!\w){re.escape(keyword)}(?!\w)"
        return re.search(pattern, f"{self.title} {self.text}", re.IGNORECASE) is not None

    def domain(self, extra_suffixes: frozenset[str] = frozenset()) -> str | None:
        """The domain the entry links to (or, without a usable link, the feed's)."""
        for url in (self.link, self.feed_url):
            if url:
                try:
                    return normalise_domain(url, extra_suffixes=extra_suffixes)
                except InvalidDomain:
                    continue
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "feed_url": self.feed_url,
            "entry_id": self.entry_id,
            "title": self.title,
            "link": self.link,
            "published_at": self.published.isoformat() if self.published else None,
        }


def parse_feed(feed_url: str, body: bytes) -> list[FeedEntry]:
    """Every entry of a feed, in feed order. Raises `FeedUnreadable`."""
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries:
        raise FeedUnreadable(str(parsed.get("bozo_exception", "not a feed")))
    return [_entry(feed_url, raw) for raw in parsed.entries]


def _entry(feed_url: str, raw: Any) -> FeedEntry:
    title = _text(raw.get("title", ""))
    link = raw.get("link") or None
    text = _text(raw.get("summary", ""))
    # Feeds without ids exist; the link, else the title, identifies the entry then.
    entry_id = raw.get("id") or link or hashlib.sha256(f"{title}|{text}".encode()).hexdigest()
    published = raw.get("published_parsed") or raw.get("updated_parsed")
    return FeedEntry(
        feed_url=feed_url,
        entry_id=str(entry_id),
        title=title,
        link=link,
        text=text,
        published=datetime.fromtimestamp(calendar.timegm(published), UTC) if published else None,
    )


def _text(html: str) -> str:
    """Entry titles and summaries may hold HTML; only their text is searched."""
    if "<" not in html:
        return " ".join(html.split())
    return " ".join(LexborHTMLParser(html).text(separator=" ").split())
