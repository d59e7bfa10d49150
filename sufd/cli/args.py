"""Small helpers for the command-line parsers of ``sufd`` and ``sufctl``."""

from __future__ import annotations

import argparse

__all__ = ["switch"]


def switch(parser: argparse.ArgumentParser, *names: str, help: str) -> None:
    """An on/off option (``--json``, ``--dry-run``, ...): absent is off."""
    parser.add_argument(*names, action="store_true", help=help)
