"""docs/scrape-extraction.md repeats the extractor's docstring: keep them equal."""

from __future__ import annotations

from pathlib import Path

import batchplane.scrape.extract as extract

DOC = Path(__file__).resolve().parents[3] / "docs" / "scrape-extraction.md"


def test_the_mapping_document_matches_the_code() -> None:
    assert extract.__doc__ is not None
    assert extract.__doc__.strip() in DOC.read_text(encoding="utf-8")
