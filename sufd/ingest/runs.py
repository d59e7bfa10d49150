"""Incremental reading of append-only line files from a byte cursor.

Only complete lines are ever yielded: a partial last line stays unread until its newline
arrives, so the cursor is always the offset just after a newline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

__all__ = ["CHUNK_BYTES", "ByteFile", "Run", "read_runs"]

# Bytes asked of the file per read: larger reads gained nothing measurable, and cost their
# size in peak memory (lines longer than this are joined from the pieces).
CHUNK_BYTES = 512 * 1024


class ByteFile(Protocol):
    """What is read from: a binary file, or the daemon's guarded one (``sufd.watch.stalls``).
    ``read`` may return fewer bytes than asked; only an empty result means the end."""

    def seek(self, offset: int, /) -> int: ...

    def read(self, size: int, /) -> bytes: ...

    def fileno(self) -> int: ...


class Run(NamedTuple):
    """Consecutive complete lines: the first starts at ``offset``, the next after them at
    ``end``; ``data`` is their bytes, each line with its newline.

    ``data`` is ``None`` for a single line longer than the limit, skipped unread. A run is
    what one read produced: handing lines over a block at a time, not one by one, lets the
    caller look for what it wants in the whole block and copy out only those lines.
    """

    offset: int
    end: int
    data: bytes | None


def read_runs(f: ByteFile, start: int, *, max_line: int, chunk: int = CHUNK_BYTES) -> Iterator[Run]:
    """Yield the complete lines of ``f`` from byte ``start`` on, in runs.

    Memory stays within about ``max_line + 2 * chunk`` whatever the file size: a line longer
    than ``max_line`` is skipped up to its newline and reported as a run without data.
    """
    f.seek(start)
    # The unfinished line so far, as pieces: joining them only once its newline arrives
    # keeps a long line from being copied again with every chunk.
    pieces: list[bytes] = []
    pending = 0
    line_start = start
    skipping = False
    while True:
        block = f.read(chunk)
        if not block:
            return
        first = block.find(b"\n")
        if first < 0:
            pending += len(block)
            if pending > max_line:
                skipping, pieces = True, []
            elif not skipping:
                pieces.append(block)
            continue
        pos = 0
        if pending or skipping:  # the unfinished line ends here
            length = pending + first
            end = line_start + length + 1
            if skipping or length > max_line:
                yield Run(line_start, end, None)
            else:
                pieces.append(block[: first + 1])
                yield Run(line_start, end, b"".join(pieces))
            pieces, pending, skipping = [], 0, False
            line_start, pos = end, first + 1
        last = block.rfind(b"\n")
        if last >= pos:
            data = block[pos : last + 1] if pos or last + 1 < len(block) else block
            end = line_start + len(data)
            if len(data) > max_line + 1:
                yield from _split_long(line_start, data, max_line)
            else:
                yield Run(line_start, end, data)
            line_start, pos = end, last + 1
        if pos < len(block):
            pending = len(block) - pos
            if pending > max_line:
                skipping = True
            else:
                pieces.append(block[pos:])


def _split_long(offset: int, data: bytes, max_line: int) -> Iterator[Run]:
    """The runs of ``data`` with each line longer than ``max_line`` a run of its own."""
    run_start = pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        if nl - pos > max_line:
            if pos > run_start:
                yield Run(offset + run_start, offset + pos, data[run_start:pos])
            yield Run(offset + pos, offset + nl + 1, None)
            run_start = nl + 1
        pos = nl + 1
    if pos > run_start:
        yield Run(offset + run_start, offset + pos, data[run_start:pos])
