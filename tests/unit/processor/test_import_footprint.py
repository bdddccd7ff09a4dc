"""Starting the processor must not import the libraries only some families use.

Each costs megabytes of RSS for the life of the process (see `batchplane.core.deferred`),
so it is imported when an item of its family first needs it. Checked in a fresh
interpreter: this test process has usually imported them already.
"""

from __future__ import annotations

import json
import subprocess
import sys

# What the processor imports at start-up: the service, every handler, the synchronous
# families' registry and the radar monitor.
STARTUP_MODULES = (
    "batchplane.processor.server",
    "batchplane.processor.handlers.enrichment",
    "batchplane.processor.handlers.lookup",
    "batchplane.processor.handlers.noop",
    "batchplane.processor.handlers.radars",
    "batchplane.processor.handlers.scrape",
    "batchplane.processor.sync.families",
    "batchplane.processor.monitor",
)

DEFERRED_LIBRARIES = (
    # enrichment's structured data (extruct and what it imports)
    "extruct",
    "lxml",
    "rdflib",
    "pyRdfa",
    "mf2py",
    "html5lib",
    "bs4",
    "w3lib",
    # enrichment's phone numbers
    "phonenumbers",
    # scrape schemas
    "jsonschema",
    "referencing",
    # keyword radar feeds
    "feedparser",
    # lookup's public suffix list (already imported on first use by lookup.domains)
    "tldextract",
)


def _modules_after_importing(modules: tuple[str, ...]) -> set[str]:
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return set(json.loads(out))


def test_starting_the_processor_imports_no_family_specific_library() -> None:
    loaded = _modules_after_importing(STARTUP_MODULES)
    top_level = {name.partition(".")[0] for name in loaded}
    assert sorted(top_level.intersection(DEFERRED_LIBRARIES)) == []


def test_the_check_sees_a_library_once_its_family_uses_it() -> None:
    # Guards the test above against passing vacuously (a wrong name, a broken script).
    script = (
        "import json, sys\n"
        "from batchplane.radars import feeds\n"
        "feeds.feedparser.parse(b'<rss/>')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert "feedparser" in json.loads(out)
