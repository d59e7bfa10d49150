"""Small helpers for the entry points ``sufd`` and ``sufctl``: options, and output to a
reader that may go away."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec

__all__ = ["switch", "until_reader_leaves"]

_P = ParamSpec("_P")


def switch(parser: argparse.ArgumentParser, *names: str, help: str) -> None:
    """An on/off option (``--json``, ``--dry-run``, ...): absent is off."""
    parser.add_argument(*names, action="store_true", help=help)


def until_reader_leaves(main: Callable[_P, int]) -> Callable[_P, int]:
    """Run an entry point whose reader may stop reading (``sufctl status | head``): that is
    not an error of ours, so no traceback; the rest of the output goes nowhere."""

    @functools.wraps(main)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            # Python would report the failed flush at exit: point stdout at nothing first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return run
