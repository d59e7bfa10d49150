"""What a source hands on: the record of one billable request, before pricing, and the
little the store must know of a source to deduplicate records (:class:`DedupPolicy`).

Defined below both the sources (which produce records) and the store (which keeps them), so
that the store depends on no source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["DedupPolicy", "Kind", "Pricing", "Record"]

Pricing = Literal["anthropic", "openai"]
Kind = Literal["lines", "document", "database"]


@dataclass(slots=True)
class Record:
    """One billable request, as a source file states it (before pricing).

    Token classes are disjoint (Anthropic semantics): ``input`` excludes cached input,
    ``cache_read`` is the cached input, ``output`` includes ``reasoning``.

    ``key`` identifies the event within the source (records with one key fill one slot);
    ``group``, when set, is shared by keys that may stand for the same event (see
    :meth:`Source.alias_match`). Within one line file, records with one key have one group
    (what parse_lines' folding relies on); across files they need not (an OpenCode message
    in its JSON storage has no group, the same one in the database has one).

    Treat it as immutable (derive changed copies with ``dataclasses.replace``). It is not
    declared frozen because a frozen dataclass of this size took five times as long to
    build, once per event.
    """

    key: str
    ts_ms: int
    session: str
    project: str
    model: str | None
    price_model: str | None
    pricing: Pricing
    input: int = 0
    output: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    reasoning: int = 0
    total: int = 0
    stored_cost: float | None = None
    fast: bool = False
    fallback_model: bool = False
    offset: int = 0
    group: str | None = None
    sidechain: bool = False
    has_speed: bool = False
    extra_output: int = 0
    estimated: bool = False

    @property
    def dedup_total(self) -> int:
        """Sum of the four token classes; the larger one wins when two lines share a key."""
        return (
            self.input + self.output + self.cache_write_5m + self.cache_write_1h + self.cache_read
        )


class DedupPolicy(Protocol):
    """How records of one source claim event slots (every source adapter is one)."""

    @property
    def name(self) -> str:
        """The source's name, stored with each event."""
        ...

    @property
    def kind(self) -> Kind:
        """How the source's files are written: appended lines, rewritten documents, databases."""
        ...

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """Whether ``new`` replaces ``old`` when both claim the same event slot."""
        ...

    def alias_match(self, new: Record, slot: Record) -> bool:
        """Whether ``new`` belongs to ``slot`` though their keys differ (same ``group``)."""
        ...
