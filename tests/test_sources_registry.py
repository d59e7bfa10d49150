"""Guard: every source module is registered, known to settings, has real samples and tests.

Adding an agent is one module in sufd/sources, its class in the registry's adapters, its name
in settings.KNOWN_SOURCES (the one list of names), its real samples in
../shared/fixtures/real/<module> and its tests in tests/test_source_<module>.py. This test
fails when any of those is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sufd.errors import ControlError
from sufd.settings import KNOWN_SOURCES
from sufd.sources import SOURCES
from sufd.sources.base import FileContext, Source
from tests.conftest import (
    REPO,
    SHARED_FIXTURES,
    SufdEnv,
    fresh_ledger_env,
    shared_fixture,
)
from tests.daemon_harness import (
    Harness,
    wait_until,
)
from tests.gen_gemini_opencode import assistant, create_opencode_db, insert_message

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
    # Every agent class (one that names itself) is registered, not just one per module:
    # dropping e.g. KiloCode while Cline stays registered must fail too.
    named = [c for c in classes if "name" in vars(c)]
    missing = [c.__name__ for c in named if not any(type(s) is c for s in SOURCES.values())]
    assert not missing, f"sufd/sources/{module_name}.py: {missing} not in sufd.sources.SOURCES"


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
    """Issue 13 item 3: one list of source names. settings.KNOWN_SOURCES is it (so sufctl
    need not import the adapters to check a name); the registry holds exactly those names,
    in that order, which is the order sources are read, watched and listed in."""
    assert tuple(SOURCES) == KNOWN_SOURCES
    for name, source in SOURCES.items():
        assert source.name == name
        assert source.kind in ("lines", "document", "database")


def test_registry_refuses_an_adapter_settings_do_not_know() -> None:
    """Issue 13 item 3: an adapter whose name is not in KNOWN_SOURCES (it could be neither
    configured nor named to sufctl), or a known name without an adapter, fails at import."""
    import sufd.sources as registry

    class Stray(Source):
        name = "stray"

        def default_roots(self, settings: Any) -> list[Path]:
            return []

    adapters = tuple(type(s) for s in SOURCES.values())
    with pytest.raises(RuntimeError, match=r"not in KNOWN_SOURCES \['stray'\]"):
        registry._registry((*adapters, Stray), KNOWN_SOURCES)
    with pytest.raises(RuntimeError, match=r"without exactly one adapter \['codex'\]"):
        registry._registry(tuple(a for a in adapters if a.name != "codex"), KNOWN_SOURCES)
    assert list(registry._registry(adapters[::-1], KNOWN_SOURCES)) == list(KNOWN_SOURCES)


def test_every_source_honours_configured_roots(isolated: object, tmp_path: Path) -> None:
    from sufd.settings import SourceSettings, load

    settings = load()
    for name, source in SOURCES.items():
        custom = settings._replace(
            sources={**settings.sources, name: SourceSettings(True, (tmp_path / name,))}
        )
        assert source.roots(custom) == [tmp_path / name], name


# ------------------------------------------------------------------------------------------
# every source end to end: on by default, in doctor / status / report, switchable off

# Where each source's real sample goes in an isolated HOME, and how many events it must give
# (fixtures/real/SOURCES.md: claude #3 3 entries; cline #9 4 api_req_started; gemini #10 2 +
# #11 1; opencode #12 + #13; cursor #14 4 assistant bubbles; kilo-cli: the one row written here).
EXPECTED_EVENTS = {
    "claude": 3,
    "codex": 2,
    "cursor": 4,
    "cline": 4,
    "roo-code": 4,
    "kilo-code": 4,
    "gemini": 3,
    "opencode": 2,
    "kilo-cli": 1,
}
NEW_SOURCES = ("cursor", "cline", "roo-code", "kilo-code", "gemini", "opencode", "kilo-cli")


def _place_every_source(home: Path) -> dict[str, Path]:
    """Copy a real sample of every source into its default root; return one root per source."""

    def put(src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)

    claude = home / ".claude" / "projects"
    put(shared_fixture("claude", "ccusage-project-alpha-session-alpha-chat.jsonl"),
        claude / "alpha" / "chat.jsonl")  # fmt: skip
    codex = home / ".codex" / "sessions"
    put(shared_fixture("codex", "ccusage-session-alpha.jsonl"), codex / "2026" / "s.jsonl")
    cursor = home / ".config" / "Cursor" / "User" / "globalStorage"
    put(shared_fixture("cursor", "adameps-urpg_app-globalStorage-state.subset.vscdb"),
        cursor / "state.vscdb")  # fmt: skip
    roots = {"claude": claude, "codex": codex, "cursor": cursor}
    ui = shared_fixture("cline", "coregems-cline-xray-ui_messages.json")
    for name, app, ext in (
        ("cline", "Code", "saoudrizwan.claude-dev"),
        ("roo-code", "VSCodium", "rooveterinaryinc.roo-cline"),
        ("kilo-code", "Windsurf", "kilocode.kilo-code"),
    ):
        roots[name] = home / ".config" / app / "User" / "globalStorage" / ext / "tasks"
        put(ui, roots[name] / f"task-{name}" / "ui_messages.json")
    roots["gemini"] = home / ".gemini" / "tmp"
    for f in ("agentsessions-gemini-jsonl_v040.jsonl", "agentsessions-gemini-large.json"):
        put(shared_fixture("gemini", f), roots["gemini"] / "p" / "chats" / f)
    roots["opencode"] = home / ".local" / "share" / "opencode"
    for f in ("agentsessions-storage_v2-msg_0002.json", "tokscale-msg_test001.json"):
        put(shared_fixture("opencode", f), roots["opencode"] / "storage" / "message" / "s" / f)
    roots["kilo-cli"] = home / ".local" / "share" / "kilo"
    conn = create_opencode_db(roots["kilo-cli"] / "kilo.db")
    tokens = {"input": 10, "output": 5, "reasoning": 0, "cache": {"read": 0, "write": 0}}
    msg = assistant("k1", "s", 1_772_445_600_000, "anthropic", "claude-sonnet-4-5", tokens)
    insert_message(conn, msg, 1_772_445_600_000)
    conn.close()
    assert sorted(roots) == sorted(SOURCES), "one root per source"
    return roots


def _events(env: SufdEnv, *sources: str) -> dict[str, Any]:
    args = [a for s in sources for a in ("--source", s)]
    out = env.run("ctl", "report", "daily", "--json", "--timezone", "UTC", *args).stdout
    totals: dict[str, Any] = json.loads(out)["totals"]
    return totals


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_every_source_on_by_default_in_doctor_status_report_and_switchable_off(
    harness: Harness, tmp_path: Path
) -> None:
    assert set(EXPECTED_EVENTS) == set(SOURCES) == set(KNOWN_SOURCES)
    h = harness
    env = h.env
    roots = _place_every_source(env.home)
    # doctor: an ok "roots <name>" naming the root, for every registered source
    doctor = json.loads(env.run("doctor", "--json", check=False).stdout)
    found = {c["name"]: c for c in doctor if c["name"].startswith("roots ")}
    assert sorted(found) == sorted(f"roots {n}" for n in SOURCES)
    for name, root in roots.items():
        assert found[f"roots {name}"]["status"] == "ok", found[f"roots {name}"]
        assert str(root) in found[f"roots {name}"]["detail"], (name, found)

    # the daemon, default config: status lists every source, watching, with its events
    daemon = h.start()

    def counted() -> dict[str, Any] | None:
        with contextlib.suppress(ControlError):
            st = h.status()
            got = {s["name"]: s["events"] for s in st["sources"]}
            return st if got == EXPECTED_EVENTS else None
        return None

    status = wait_until(
        counted, 30, interval=0.1, what=h.with_diagnostics(f"status to show {EXPECTED_EVENTS}")
    )
    for src in status["sources"]:
        states = {r["path"]: r["state"] for r in src["roots"]}
        assert states.get(str(roots[src["name"]])) == "watching", (src["name"], states)
    text = env.run("ctl", "status").stdout  # the text form names every source too
    assert all(any(ln.startswith(f"{n} ") for ln in text.splitlines()) for n in SOURCES)

    # reports: --source for each; Cursor's events, and only those, are counted as estimated
    everything = _events(env)
    assert everything["events"] == sum(EXPECTED_EVENTS.values())
    assert everything["estimatedEvents"] == EXPECTED_EVENTS["cursor"]
    for name, n in EXPECTED_EVENTS.items():
        totals = _events(env, name)
        assert totals["events"] == n, name
        assert totals["estimatedEvents"] == (n if name == "cursor" else 0), name
    mixed = _events(env, "cursor", "claude")
    assert (mixed["events"], mixed["estimatedEvents"]) == (4 + 3, 4)
    h.kill(daemon)

    # switched off in the config file: not read, not in doctor, nothing in the ledger
    off = fresh_ledger_env(env, tmp_path / "off")
    config = Path(off.env["XDG_CONFIG_HOME"]) / "sufd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("".join(f"[sources.{n}]\nenabled = false\n" for n in NEW_SOURCES))
    doctor = json.loads(off.run("doctor", "--json", check=False).stdout)
    assert sorted(c["name"] for c in doctor if c["name"].startswith("roots ")) == [
        "roots claude",
        "roots codex",
    ]
    stats = json.loads(off.run("ingest", "--json").stdout)
    assert stats["errors"] == []
    assert _events(off)["events"] == EXPECTED_EVENTS["claude"] + EXPECTED_EVENTS["codex"]
    for name in NEW_SOURCES:
        assert _events(off, name)["events"] == 0, name


_MARKED = sorted(n for n, s in SOURCES.items() if s.kind == "lines" and s.markers)


def test_line_sources_declare_markers() -> None:
    """The line sources skip unmarked lines unparsed; a source dropping its markers would
    still be correct, only slow: that should be a decision, not an accident."""
    assert sorted(n for n, s in SOURCES.items() if s.kind == "lines") == _MARKED


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@pytest.mark.parametrize("name", _MARKED)
@settings(max_examples=150, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=12), _JSON_VALUES, max_size=6))
def test_unmarked_object_lines_carry_nothing(name: str, obj: dict[str, Any]) -> None:
    """The contract ingest relies on to pass such lines over: ``parse_line`` returns None
    for a ``{…}`` line without a marker, and leaves the carried state as it was."""
    source = SOURCES[name]
    line = json.dumps(obj).encode()
    assume(not any(m in line for m in source.markers))
    ctx = FileContext(Path("/x/y/z.jsonl"), Path("/x"), source.new_state())
    before = json.dumps(ctx.state, sort_keys=True)
    assert source.parse_line(line, 0, ctx) is None
    assert json.dumps(ctx.state, sort_keys=True) == before


@pytest.mark.parametrize("name", _MARKED)
def test_unmarked_real_lines_carry_nothing(name: str) -> None:
    """The same over every line of the real samples that has no marker."""
    source = SOURCES[name]
    checked = 0
    for path in sorted(shared_fixture(name).rglob("*.jsonl")):
        ctx = FileContext(path, path.parent, source.new_state())
        for offset, line in enumerate(path.read_bytes().split(b"\n")):
            line = line.strip()
            if not line.startswith(b"{") or any(m in line for m in source.markers):
                continue
            before = json.dumps(ctx.state, sort_keys=True)
            assert source.parse_line(line, offset, ctx) is None, (path.name, offset)
            assert json.dumps(ctx.state, sort_keys=True) == before
            checked += 1
    assert checked > 20, "too few unmarked lines in the samples for this to mean anything"
