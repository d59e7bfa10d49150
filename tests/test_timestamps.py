"""Timestamps: exactly the shapes ccusage takes, to the millisecond (oracle: a regular
expression of formats.md's shape plus datetime arithmetic written out here)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sufd.sources.base import parse_timestamp_ms

_SHAPE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}))?(Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _oracle(value: str) -> int | None:
    m = _SHAPE.fullmatch(value)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone, sign, zh, zm = m.groups()
    try:
        offset = timedelta(hours=int(zh), minutes=int(zm)) if zone != "Z" else timedelta(0)
        tz = timezone(-offset if sign == "-" else offset)
        local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError:  # no such date or time, or an offset of a day or more
        return None
    if not 1970 <= local.year <= 2099:
        return None
    seconds = (local - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    return seconds * 1000 + (int(frac) if frac else 0)


_DIGIT_OR_NOT = st.sampled_from("0123456789") | st.sampled_from("0123456789:-T.Z+ W٣")


@st.composite
def _stamps(draw: st.DrawFn) -> str:
    """Mostly well-formed stamps with a few characters changed, dropped or added."""
    base = draw(st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2110, 1, 1)))
    text = base.strftime("%Y-%m-%dT%H:%M:%S") + draw(st.sampled_from(["", ".123", ".5", ".1234"]))
    text += draw(st.sampled_from(["Z", "+05:45", "-08:00", "+24:00", "+0530", "", "z"]))
    chars = list(text)
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(chars)))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if op == "set" and i < len(chars):
            chars[i] = draw(_DIGIT_OR_NOT)
        elif op == "drop" and i < len(chars):
            del chars[i]
        elif op == "add":
            chars.insert(i, draw(_DIGIT_OR_NOT))
    return "".join(chars)


@settings(max_examples=3000, deadline=None)
@given(_stamps())
@example("2026-03-29T01:30:00.000Z")
@example("2026-02-29T00:00:00Z")  # no such day
@example("2026-W13-7T01:30:00Z")  # a week date: fromisoformat takes it, ccusage does not
@example("2026-03-29T013000.00Z")
@example("2099-12-31T23:59:59.999-01:00")  # 2100 in UTC, still 2099 where it was written
@example("1970-01-01T00:00:00+01:00")  # before the epoch in UTC
@example("2026-03-29T12:34:56.789+05:45")
def test_timestamps_match_the_accepted_shapes(value: str) -> None:
    assert parse_timestamp_ms(value) == _oracle(value)


def test_non_strings_are_not_timestamps() -> None:
    for value in (None, 1777638896789, 1.5, b"2026-05-01T12:34:56Z", ["x"]):
        assert parse_timestamp_ms(value) is None
