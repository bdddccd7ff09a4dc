"""Profile page snapshots for contact radars, and what counts as a change."""

from __future__ import annotations

from batchplane.radars.profiles import changes, snapshot

PAGE = """<html><head><title>Jane Roe</title>
<meta name="description" content="Jane Roe leads anvil research at Acme.">
<script>var tracking = Math.random();</script></head>
<body><h1>Jane Roe</h1><a href="https://github.com/janeroe">GitHub</a><p>Hello.</p></body></html>"""


def test_a_snapshot_keeps_title_summary_socials_and_a_text_hash() -> None:
    taken = snapshot("https://people.example/jane", PAGE)

    assert taken["title"] == "Jane Roe"
    assert taken["summary"] == "Jane Roe leads anvil research at Acme."
    assert taken["socials"] == {"github": "https://github.com/janeroe"}
    assert len(taken["content"]) == 64


def test_the_same_page_has_no_changes_even_if_its_scripts_differ() -> None:
    before = snapshot("https://people.example/jane", PAGE)
    after = snapshot("https://people.example/jane", PAGE.replace("random()", "random() * 2"))

    assert changes(before, after) == {}


def test_changed_fields_are_named_with_before_and_after() -> None:
    before = snapshot("https://people.example/jane", PAGE)
    after = snapshot(
        "https://people.example/jane",
        PAGE.replace("leads anvil research at Acme", "is CTO of Beta").replace(
            "<title>Jane Roe</title>", "<title>Jane Roe, CTO</title>"
        ),
    )

    assert changes(before, after) == {
        "title": {"before": "Jane Roe", "after": "Jane Roe, CTO"},
        "summary": {
            "before": "Jane Roe leads anvil research at Acme.",
            "after": "Jane Roe is CTO of Beta.",
        },
    }


def test_a_text_only_edit_is_a_content_change() -> None:
    before = snapshot("https://people.example/jane", PAGE)
    after = snapshot("https://people.example/jane", PAGE.replace("Hello.", "Hello again."))

    assert list(changes(before, after)) == ["content"]
