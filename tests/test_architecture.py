"""The package's import graph follows the one-way flow (issue 13).

Every import in ``sufd/`` counts, including those inside functions and under
``TYPE_CHECKING``: a lazy import hides a dependency from start-up time, not from the design.
The test fails on any cycle between modules and on any import of a higher stage by a lower
one. The stages, from the ground up, are :data:`STAGES`; a module may import its own stage
and those below it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sufd"

# Bottom first. A module's stage is its first dotted part below ``sufd`` (``sufd.store.x`` is
# ``store``); the top-level modules are stages of their own.
STAGES: tuple[tuple[str, ...], ...] = (
    ("errors", "logger", "records"),
    ("settings", "logs"),
    ("prices",),
    ("sources",),
    ("store",),
    ("watch", "control"),
    ("ingest",),
    ("daemon",),
    ("service",),
    ("cli",),
    ("__main__",),
)
LEVEL = {name: i for i, names in enumerate(STAGES) for name in names}
# The issue names these outright; they are implied by STAGES and checked on their own too.
FORBIDDEN = {
    "store": {"ingest", "daemon", "control", "cli", "sources"},
    "sources": {"ingest", "daemon", "control", "cli", "store"},
    "daemon": {"cli"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every ``sufd`` module that ``path`` imports (at any depth), with the line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sufd"):
                    yield _resolve(alias.name, known), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("sufd"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in known else _resolve(base, known)), node.lineno


def _resolve(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, dict[str, int]]:
    found = modules()
    known = set(found)
    edges: dict[str, dict[str, int]] = {}
    for name, path in found.items():
        targets = edges.setdefault(name, {})
        for target, line in imports(path, known):
            if target != name and target != "sufd":
                targets.setdefault(target, line)
    return edges


def test_the_graph_is_read() -> None:
    """The reader must see the imports it is meant to judge (else every check passes)."""
    edges = graph()
    assert "sufd.store.ledger" in edges["sufd.ingest.ingestor"]
    assert "sufd.ingest.prefetch" in edges["sufd.ingest.ingestor"]  # a lazy import
    assert "sufd.settings" in edges["sufd.sources.base"]
    assert all(stage(m) in LEVEL or stage(m) == "__init__" for m in edges), sorted(
        {stage(m) for m in edges} - set(LEVEL)
    )


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, {}):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_imports_follow_the_flow() -> None:
    against = []
    for module, targets in sorted(graph().items()):
        here = stage(module)
        for target, line in targets.items():
            there = stage(target)
            if here in LEVEL and there in LEVEL and LEVEL[there] > LEVEL[here]:
                against.append(f"{module}:{line} imports {target} ({here} below {there})")
            if there in FORBIDDEN.get(here, set()):
                against.append(f"{module}:{line} imports {target} (never {here} -> {there})")
    assert against == [], "\n".join(against)


@pytest.mark.parametrize("limit_lines, limit_class", [(500, 400)])
def test_modules_and_classes_stay_small(limit_lines: int, limit_class: int) -> None:
    """No module over 500 lines without a one-line reason at its top (a comment starting
    ``# Over 500 lines:``); no class over 400 lines."""
    problems = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > limit_lines and "# Over 500 lines:" not in "\n".join(text.splitlines()[:40]):
            problems.append(f"{name}: {lines} lines and no '# Over 500 lines:' reason at its top")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > limit_class:
                    problems.append(f"{name}.{node.name}: a class of {size} lines")
    assert problems == [], "\n".join(problems)
