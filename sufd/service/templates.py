"""Rendering the unit and plist templates that ship in the package.

The templates are whole files (``systemd/sufd.service``, ``launchd/io.github.sufd.plist`` in
the repository, ``sufd/_templates/`` in the wheel); rendering only fills ``@@NAME@@`` slots,
quoting each value for its format.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = [
    "LABEL",
    "PLIST_TEMPLATE",
    "UNIT_NAME",
    "render_plist",
    "render_unit",
    "systemd_quote",
    "template_text",
]

UNIT_NAME = "sufd.service"
LABEL = "io.github.sufd"
PLIST_TEMPLATE = f"{LABEL}.plist"
DOCS_URL = "https://github.com/sufd/sufd#readme"
_REPO_DIRS = {UNIT_NAME: "systemd", PLIST_TEMPLATE: "launchd"}


def template_text(name: str) -> str:
    """The template's text: from the installed package, else from a source checkout."""
    packaged = resources.files("sufd").joinpath("_templates", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / _REPO_DIRS[name] / name
    return checkout.read_text(encoding="utf-8")


def systemd_quote(arg: str) -> str:
    """One ``ExecStart`` word: double-quoted, with ``\\ " % $`` escaped for systemd."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise ValueError("template has an unfilled @@slot@@")
    return text


def render_unit(argv: Sequence[str], *, version: str) -> str:
    """The systemd user unit running ``argv``."""
    return _fill(
        template_text(UNIT_NAME),
        {
            "VERSION": version,
            "DOCS_URL": DOCS_URL,
            "EXEC_START": " ".join(systemd_quote(a) for a in argv),
        },
    )


def render_plist(
    argv: Sequence[str], *, version: str, state_dir: Path, log_dir: Path, label: str = LABEL
) -> str:
    """The launchd agent plist running ``argv``."""
    program = "\n".join(f"\t\t<string>{escape(a)}</string>" for a in argv)
    return _fill(
        template_text(PLIST_TEMPLATE),
        {
            "VERSION": escape(version),
            "LABEL": escape(label),
            "PROGRAM_ARGUMENTS": program,
            "STATE_DIR": escape(str(state_dir)),
            "STDOUT_PATH": escape(str(log_dir / "launchd.stdout.log")),
            "STDERR_PATH": escape(str(log_dir / "launchd.stderr.log")),
        },
    )
