"""Rendering the unit and plist templates that ship in the package.

The templates are whole files (``systemd/sufd.service``, ``launchd/io.github.sufd.plist`` in
the repository, ``sufd/_templates/`` in the wheel); rendering only fills ``@@NAME@@`` slots,
quoting each value for its format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape

from sufd.errors import SufdError

__all__ = [
    "LABEL",
    "PLIST_TEMPLATE",
    "UNIT_NAME",
    "UnrunnableInterpreter",
    "render_plist",
    "render_unit",
    "systemd_quote",
    "systemd_quote_executable",
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


class UnrunnableInterpreter(SufdError, ValueError):
    """The interpreter's path cannot be the program of a systemd ``ExecStart``."""


# systemd refuses these in the path of an executable ("Executable name contains special
# characters"); "${" and "$$" would make the argv[0] it passes differ from the path it runs.
_UNRUNNABLE = re.compile(r"[\x00-\x1f\x7f\"'\\]|\$\{|\$\$")


def systemd_quote_executable(path: str) -> str:
    """The program word of ``ExecStart``: only ``%`` specifiers apply to it.

    systemd does not substitute ``$`` in the executable path, so ``$`` must not be doubled
    there (unlike in the arguments), and it cannot run a path holding quotes, backslashes
    or control characters at all.

    Raises:
        UnrunnableInterpreter: ``path`` cannot be run by systemd (a ``ValueError``).
    """
    if _UNRUNNABLE.search(path):
        raise UnrunnableInterpreter(
            f"systemd cannot run the interpreter {path!r} (quotes, backslashes, control"
            " characters, '${' or '$$' in its path); install sufd in an environment at a"
            " plainer path, e.g. with pipx or uv tool"
        )
    return '"' + path.replace("%", "%%") + '"'


_SLOT = re.compile(r"@@([A-Z_]+)@@")


def _fill(text: str, values: dict[str, str]) -> str:
    missing = set(_SLOT.findall(text)) - set(values)
    if missing:
        raise ValueError(f"template has unfilled slots: {', '.join(sorted(missing))}")
    # One pass: a value is never scanned for slots (a path may contain "@@").
    return _SLOT.sub(lambda m: values[m.group(1)], text)


def render_unit(argv: Sequence[str], *, version: str) -> str:
    """The systemd user unit running ``argv``."""
    return _fill(
        template_text(UNIT_NAME),
        {
            "VERSION": version,
            "DOCS_URL": DOCS_URL,
            "EXEC_START": " ".join(
                [systemd_quote_executable(argv[0]), *(systemd_quote(a) for a in argv[1:])]
            ),
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
