"""Guard: every source module is registered, known to settings, has real samples and tests.

Adding an agent is one module in sufd/sources, one line in the registry, its name in
settings.KNOWN_SOURCES, its real samples in ../shared/fixtures/real/<module> and its tests in
tests/test_source_<module>.py. This test fails when any of those is missing.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from sufd.settings import KNOWN_SOURCES
from sufd.sources import SOURCES
from sufd.sources.base import Source
from tests.conftest import REPO, SHARED_FIXTURES

SOURCE_DIR = REPO / "sufd" / "sources"
MODULES = sorted(p.stem for p in SOURCE_DIR.glob("*.py") if p.stem not in ("__init__", "base"))


def _classes(module_name: str) -> list[type[Source]]:
    module = importlib.import_module(f"sufd.sources.{module_name}")
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Source) and obj is not Source and obj.__module__ == module.__name__
    ]


def test_there_are_source_modules() -> None:
    assert {"claude", "codex"} <= set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_module_is_registered(module_name: str) -> None:
    classes = [c for c in _classes(module_name) if not inspect.isabstract(c)]
    assert classes, f"sufd/sources/{module_name}.py defines no Source subclass"
    registered = [s for s in SOURCES.values() if type(s) in classes]
    assert registered, f"no instance of {[c.__name__ for c in classes]} in sufd.sources.SOURCES"


@pytest.mark.parametrize("module_name", MODULES)
def test_module_has_tests(module_name: str) -> None:
    test_file = REPO / "tests" / f"test_source_{module_name}.py"
    assert test_file.exists(), f"{test_file.relative_to(REPO)} is missing"
    assert "def test_" in test_file.read_text()


@pytest.mark.parametrize("module_name", MODULES)
def test_module_has_real_fixtures(module_name: str) -> None:
    if not SHARED_FIXTURES.exists():
        pytest.skip(f"{SHARED_FIXTURES} is not present (it lives beside the repository)")
    fixture_dir = SHARED_FIXTURES / module_name
    assert fixture_dir.is_dir() and any(fixture_dir.iterdir()), f"no samples in {fixture_dir}"


def test_registry_names_match_settings() -> None:
    # settings keeps a literal list so sufctl need not import the adapters to validate names.
    assert set(SOURCES) <= set(KNOWN_SOURCES)
    for name, source in SOURCES.items():
        assert source.name == name
        assert source.kind in ("lines", "document", "database")


def test_every_source_honours_configured_roots(isolated: object, tmp_path: Path) -> None:
    from sufd.settings import SourceSettings, load

    settings = load()
    for name, source in SOURCES.items():
        custom = settings._replace(
            sources={**settings.sources, name: SourceSettings(True, (tmp_path / name,))}
        )
        assert source.roots(custom) == [tmp_path / name], name
