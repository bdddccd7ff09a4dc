"""Deferred imports: nothing is imported until an attribute is read."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchplane.core.deferred import deferred_import


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway package `deferred_probe` with a submodule `sub`, never imported yet."""
    package = tmp_path / "deferred_probe"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 'package'\n")
    (package / "sub.py").write_text("VALUE = 'submodule'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "deferred_probe"
    for name in ("deferred_probe.sub", "deferred_probe"):
        sys.modules.pop(name, None)


def test_the_module_is_imported_on_the_first_attribute_read(probe: str) -> None:
    module = deferred_import(probe)
    assert probe not in sys.modules
    assert module.VALUE == "package"
    assert probe in sys.modules


def test_a_dotted_name_defers_the_submodule_too(probe: str) -> None:
    sub = deferred_import(f"{probe}.sub")
    assert probe not in sys.modules
    assert sub.VALUE == "submodule"


def test_a_missing_library_fails_at_first_use_not_before() -> None:
    missing = deferred_import("batchplane_no_such_module")
    assert "batchplane_no_such_module" in repr(missing)
    with pytest.raises(ModuleNotFoundError):
        missing.anything  # noqa: B018 - the read is the point
