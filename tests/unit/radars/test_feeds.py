"""Feed entries for industry radars: RSS and Atom through feedparser, keyword matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchplane.radars.feeds import FeedUnreadable, parse_feed

RSS = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Industry news</title>
<item><guid>n-1</guid><title>Acme &lt;b&gt;Anvils&lt;/b&gt; opens a plant</title>
  <link>https://www.acme-anvils.com/news/plant</link>
  <description>&lt;p&gt;The anvil maker grows.&lt;/p&gt;</description>
  <pubDate>Mon, 23 Nov 2026 10:00:00 GMT</pubDate></item>
<item><title>No id, no link</title><description>anvilsmith wanted</description></item>
</channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Jobs</title>
<entry><id>urn:job:7</id><title>Senior anvil engineer</title>
  <link href="https://jobs.beta-corp.io/7"/><updated>2026-11-22T08:30:00Z</updated>
  <summary>Join us</summary></entry>
</feed>"""


def test_rss_entries_keep_ids_links_text_and_dates() -> None:
    first, second = parse_feed("https://feeds.newswire.com/rss", RSS)

    assert first.entry_id == "n-1"
    assert first.title == "Acme Anvils opens a plant"
    assert first.text == "The anvil maker grows."
    assert first.link == "https://www.acme-anvils.com/news/plant"
    assert first.published == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert first.domain() == "www.acme-anvils.com"
    # Without an id or a link, the content identifies the entry, and the feed gives the domain.
    assert len(second.entry_id) == 64
    assert second.domain() == "feeds.newswire.com"


def test_atom_entries_are_read_too() -> None:
    (entry,) = parse_feed("https://feeds.newswire.com/atom", ATOM)

    assert (entry.entry_id, entry.link) == ("urn:job:7", "https://jobs.beta-corp.io/7")
    assert entry.published == datetime(2026, 11, 22, 8, 30, tzinfo=UTC)
    assert entry.as_json()["published_at"] == "2026-11-22T08:30:00+00:00"


@pytest.mark.parametrize(
    ("keyword", "matches"),
    [("anvils", [True, False]), ("ANVIL", [True, False]), ("anvilsmith", [False, True]),
     ("plant", [True, False]), ("nvil", [False, False]), (None, [True, True])],
)  # fmt: skip
def test_keywords_match_whole_words_in_title_or_text(
    keyword: str | None, matches: list[bool]
) -> None:
    entries = parse_feed("https://feeds.newswire.com/rss", RSS)

    assert [entry.mentions(keyword) for entry in entries] == matches


def test_a_page_that_is_not_a_feed_is_unreadable() -> None:
    with pytest.raises(FeedUnreadable):
        parse_feed("https://feeds.newswire.com/rss", b"<<< not a feed")
