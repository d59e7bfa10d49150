"""Incremental reading of append-only line files from a byte cursor.

Only complete lines are ever yielded: a partial last line stays unread until its newline
arrives, so the cursor is always the offset just after a newline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["CHUNK_BYTES", "Line", "read_lines"]

CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line: where it starts, where the next one starts, and its bytes.

    ``data`` is ``None`` when the line was longer than the limit and was skipped unread.
    """

    offset: int
    end: int
    data: bytes | None


def read_lines(
    f: BinaryIO, start: int, *, max_line: int, chunk: int = CHUNK_BYTES
) -> Iterator[Line]:
    """Yield the complete lines of ``f`` from byte ``start`` on.

    Memory stays within ``max_line + chunk`` whatever the file size: a line longer than
    ``max_line`` is skipped up to its newline and reported with ``data=None``.
    """
    f.seek(start)
    pending = b""
    pending_start = start
    skipping = False
    skip_from = start
    while True:
        block = f.read(chunk)
        if not block:
            return
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                pending_start += len(block)
                continue
            end = pending_start + nl + 1
            yield Line(skip_from, end, None)
            block = block[nl + 1 :]
            pending_start = end
            skipping = False
        data = pending + block if pending else block
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            pending = data
        else:
            offset = pending_start
            for raw in data[:last_nl].split(b"\n"):
                end = offset + len(raw) + 1
                if len(raw) > max_line:
                    yield Line(offset, end, None)
                else:
                    yield Line(offset, end, raw)
                offset = end
            pending = data[last_nl + 1 :]
            pending_start = offset
        if len(pending) > max_line:
            skipping = True
            skip_from = pending_start
            pending_start += len(pending)
            pending = b""
