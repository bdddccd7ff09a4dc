"""Contact radars: what a profile page shows, and what changed between two checks.

A snapshot keeps the few things a person's profile change is made of (the page
title, its summary and its social links, read by the enrichment extractor) and a
hash of the visible text, so an edit anywhere else on the page is still noticed,
as `content`, without storing the page.
"""

from __future__ import annotations

import hashlib
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from batchplane.enrichment.extract import INVISIBLE_TAGS, MAX_HTML_CHARS, PageInput, extract

PROFILE_CHANGED = "profile_changed"
"""The signal type a contact radar records."""

Snapshot = dict[str, Any]
"""JSON-ready: `title`, `summary`, `socials` (each possibly None) and `content` (a hash)."""

_COMPARED = ("title", "summary", "socials")


def snapshot(url: str, html: str) -> Snapshot:
    """The parts of a profile page that a change is reported for."""
    fields = extract(PageInput(url=url, html=html), ["summary", "socials"])
    dom = LexborHTMLParser(html[:MAX_HTML_CHARS])
    title_node = dom.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    dom.strip_tags(INVISIBLE_TAGS, recursive=True)
    text = " ".join((dom.body.text(separator=" ") if dom.body is not None else "").split())
    return {
        "title": title or None,
        "summary": fields["summary"],
        "socials": fields["socials"],
        "content": hashlib.sha256(text.encode()).hexdigest(),
    }


def changes(before: Snapshot, after: Snapshot) -> dict[str, dict[str, Any]]:
    """Field -> `{"before", "after"}` for what differs; `content` when only the text did.

    Empty when nothing changed.
    """
    changed = {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in _COMPARED
        if before.get(name) != after.get(name)
    }
    if not changed and before.get("content") != after.get("content"):
        changed["content"] = {"before": before.get("content"), "after": after.get("content")}
    return changed
