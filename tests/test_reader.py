"""The line reader: only complete lines, exact offsets, bounded memory on huge lines."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sufd.ingest.runs import read_runs


def _collect(
    data: bytes, start: int = 0, *, max_line: int = 1 << 20, chunk: int = 7
) -> list[tuple[int, int, bytes | None]]:
    """The runs read from ``data``, one ``(offset, end, line)`` per line (``None``: too long)."""
    lines: list[tuple[int, int, bytes | None]] = []
    for run in read_runs(io.BytesIO(data), start, max_line=max_line, chunk=chunk):
        if run.data is None:
            lines.append((run.offset, run.end, None))
            continue
        offset = run.offset
        for line in run.data.split(b"\n")[:-1]:
            lines.append((offset, offset + len(line) + 1, line))
            offset += len(line) + 1
        assert offset == run.end
    return lines


def test_partial_last_line_is_not_yielded() -> None:
    data = b'{"a":1}\n{"b":2}\n{"c":'
    lines = _collect(data)
    assert [d for _, _, d in lines] == [b'{"a":1}', b'{"b":2}']
    assert lines[-1][1] == data.index(b'{"c":')


def test_offsets_are_byte_exact_and_resume_from_cursor() -> None:
    data = b"one\ntwo\n\nthree\n"
    lines = _collect(data)
    assert lines == [(0, 4, b"one"), (4, 8, b"two"), (8, 9, b""), (9, 15, b"three")]
    assert _collect(data, start=8) == [(8, 9, b""), (9, 15, b"three")]


def test_overlong_line_is_skipped_and_reported_without_data() -> None:
    big = b"x" * 100
    data = b"ok\n" + big + b"\nafter\n"
    lines = _collect(data, max_line=50, chunk=16)
    assert lines == [(0, 3, b"ok"), (3, 104, None), (104, 110, b"after")]


def test_overlong_partial_line_at_eof_is_not_consumed() -> None:
    data = b"ok\n" + b"y" * 100
    assert _collect(data, max_line=50, chunk=16) == [(0, 3, b"ok")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.booleans(),
    st.integers(min_value=1, max_value=64),
)
def test_any_chunking_yields_the_same_lines(parts: list[bytes], trailing: bool, chunk: int) -> None:
    data = b"\n".join(parts) + (b"\n" if trailing else b"")
    expected_lines = data.split(b"\n")[:-1]  # the last piece has no newline: partial or empty
    got = _collect(data, chunk=chunk)
    assert [d for _, _, d in got] == expected_lines
    # Reading in two steps from the cursor gives the same result as one pass.
    if got:
        cut = got[len(got) // 2][0]
        assert _collect(data[:], start=cut, chunk=chunk) == [g for g in got if g[0] >= cut]


def test_random_chunk_sizes_large_input() -> None:
    rng = random.Random(7)
    lines = [
        bytes(rng.randrange(97, 123) for _ in range(rng.randrange(0, 300))) for _ in range(500)
    ]
    data = b"\n".join(lines) + b"\n"
    for chunk in (1, 13, 4096):
        assert [d for _, _, d in _collect(data, chunk=chunk)] == lines


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=25),
    st.booleans(),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=25),
)
def test_lines_over_the_limit_are_reported_in_place(
    parts: list[bytes], trailing: bool, chunk: int, max_line: int
) -> None:
    """Whether a long line lies within one read or spans several, it is reported with its
    exact offsets and no data, and the lines around it are untouched (oracle: split)."""
    data = b"\n".join(parts) + (b"\n" if trailing else b"")
    want, offset = [], 0
    for line in data.split(b"\n")[:-1]:
        end = offset + len(line) + 1
        want.append((offset, end, None if len(line) > max_line else line))
        offset = end
    assert _collect(data, chunk=chunk, max_line=max_line) == want


def test_runs_cover_the_bytes_without_gaps() -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(1000)) + b'{"partial'
    runs = list(read_runs(io.BytesIO(data), 0, max_line=1 << 20, chunk=4096))
    assert len(runs) > 1  # one per read: the caller handles a block of lines at a time
    assert runs[0].offset == 0 and runs[-1].end == data.rindex(b"\n") + 1
    for a, b in zip(runs, runs[1:], strict=False):
        assert a.end == b.offset
    for run in runs:
        assert run.data is not None and run.end - run.offset == len(run.data)
        assert run.data.endswith(b"\n")
