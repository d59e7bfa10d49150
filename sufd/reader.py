"""Incremental reading of append-only line files from a byte cursor.

Only complete lines are ever yielded: a partial last line stays unread until its newline
arrives, so the cursor is always the offset just after a newline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol

__all__ = ["CHUNK_BYTES", "ByteFile", "Line", "read_lines"]

# Bytes asked of the file per read: larger reads gained nothing measurable, and cost their
# size in peak memory (lines longer than this are joined from the pieces).
CHUNK_BYTES = 512 * 1024


class ByteFile(Protocol):
    """What is read from: a binary file, or the daemon's guarded one (``sufd.stalls``).
    ``read`` may return fewer bytes than asked; only an empty result means the end."""

    def seek(self, offset: int, /) -> int: ...

    def read(self, size: int, /) -> bytes: ...

    def fileno(self) -> int: ...


class Line(NamedTuple):
    """One complete line: where it starts, where the next one starts, and its bytes.

    ``data`` is ``None`` when the line was longer than the limit and was skipped unread.
    (A tuple, not a dataclass: one is built per line, and that cost showed in profiles.)
    """

    offset: int
    end: int
    data: bytes | None


def read_lines(
    f: ByteFile, start: int, *, max_line: int, chunk: int = CHUNK_BYTES
) -> Iterator[Line]:
    """Yield the complete lines of ``f`` from byte ``start`` on.

    Memory stays within about ``max_line + 2 * chunk`` whatever the file size: a line longer
    than ``max_line`` is skipped up to its newline and reported with ``data=None``.
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
        pos = 0
        while True:
            nl = block.find(b"\n", pos)
            if nl < 0:
                rest = block[pos:]
                pending += len(rest)
                if pending > max_line:
                    skipping, pieces = True, []
                elif not skipping:
                    pieces.append(rest)
                break
            piece = block[pos:nl]
            length = pending + len(piece)
            end = line_start + length + 1
            if skipping or length > max_line:
                yield Line(line_start, end, None)
            elif pieces:
                pieces.append(piece)
                yield Line(line_start, end, b"".join(pieces))
            else:
                yield Line(line_start, end, piece)
            pieces, pending, skipping = [], 0, False
            line_start = end
            pos = nl + 1
