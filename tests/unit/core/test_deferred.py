"""Deferred imports: nothing is imported until an attribute is read."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchplane.core.deferred import deferred_import, loaded


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway package `deferred_probe` with a submodule `sub`, never imported yet."""
    package = tmp_path / "deferred_probe"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import threading\nVALUE = 'package'\nIMPORTED_BY = threading.current_thread().name\n"
    )
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


async def test_loaded_imports_off_the_event_loop_thread_once(probe: str) -> None:
    module = deferred_import(probe)
    await loaded(module)
    assert probe in sys.modules
    # A big import would stall every coroutine if done on the loop's thread.
    assert threading.current_thread().name != module.IMPORTED_BY
    imported = sys.modules[probe]
    await loaded(module)  # already imported: nothing again
    assert sys.modules[probe] is imported
