"""A fixed-size filter of strings: which of some keys are certainly not among those added.

The ledger looks up every key and group of a batch to find the stored events it dedups
into. During a first catch-up into a ledger that held no events of a source, every stored
key of that source is one the same transaction added, so this filter can rule out most
lookups without asking SQLite. It answers "maybe" for every string added and, rarely, for
one that was not (two strings sharing a bit): such a "maybe" only costs the lookup that
would have happened anyway. Its size is fixed, however many keys are added.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KeyFilter"]


class KeyFilter:
    """One bit per hash value, ``2 ** bits_log2`` bits; never a false "certainly not".

    Python's string hash is salted per process, so a filter is only meaningful inside the
    process that built it (it is never stored).
    """

    __slots__ = ("_bits", "_mask")

    def __init__(self, bits_log2: int = 24) -> None:
        self._bits = bytearray(1 << (bits_log2 - 3))
        self._mask = (1 << bits_log2) - 1

    def add(self, items: Iterable[str]) -> None:
        """Remember ``items``: :meth:`maybe` will return each of them from now on."""
        bits, mask = self._bits, self._mask
        for item in items:
            h = hash(item) & mask
            bits[h >> 3] |= 1 << (h & 7)

    def maybe(self, items: Iterable[str]) -> list[str]:
        """The ``items`` that may have been added (all that were, and a few others)."""
        bits, mask = self._bits, self._mask
        found = []
        for item in items:
            h = hash(item) & mask
            if bits[h >> 3] >> (h & 7) & 1:
                found.append(item)
        return found
