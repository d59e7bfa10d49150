"""An entry point whose reader has gone away (``sufctl status | head``) says nothing.

Python raises ``BrokenPipeError`` on the first write to a pipe nobody reads; the commands
must not answer that with a traceback on the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "sufd.cli.sufctl", "--help"],
        ["-m", "sufd", "--help"],
        ["-m", "sufd", "paths"],
    ],
    ids=["sufctl-help", "sufd-help", "sufd-paths"],
)
def test_a_reader_that_left_gets_no_traceback(argv: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        proc = subprocess.run(
            [sys.executable, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipeError" not in proc.stderr, proc.stderr
