"""The contract every source adapter implements, and the records it produces.

A source knows three things: where its files live on this machine (:meth:`Source.roots`),
which files below a root it owns (:meth:`Source.owns`), and how to turn one line of such a
file into a :class:`Record` (:meth:`Source.parse_line`). Reading files incrementally,
pricing and storing are done elsewhere, the same way for every source.

Example::

    class MyAgent(Source):
        name = "myagent"
        suffixes = (".jsonl",)

        def roots(self, settings):
            return [settings.home / ".myagent" / "logs"]

        def parse_line(self, line, offset, ctx):
            obj = ctx.json(line)          # raises Malformed on bad JSON
            if "usage" not in obj:
                return None
            return Record(key=obj["id"], ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import orjson

from sufd.prices.costs import cost_at
from sufd.prices.table import PriceTable
from sufd.records import Kind, Pricing, Record
from sufd.settings import Settings

__all__ = [
    "FileContext",
    "Kind",
    "Malformed",
    "Pricing",
    "Record",
    "Source",
    "database_signature",
    "looks_like_object",
    "parse_timestamp_ms",
    "short_hash",
    "symlinked_below",
]


class Malformed(Exception):
    """A complete line that cannot be understood; ingest counts and records it, then skips it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class FileContext:
    """What a parser may know about the file it is reading.

    ``state`` is carried between lines and persisted with the file's cursor (Codex keeps its
    previous cumulative total and current model there), so it must stay JSON-serialisable.
    """

    path: Path
    root: Path | None
    state: dict[str, Any] = field(default_factory=dict)
    # Whole-file and database sources report bad entries here: (byte offset or row, reason).
    malformed: list[tuple[int, str]] = field(default_factory=list)

    @staticmethod
    def json(line: bytes) -> Any:
        """Parse a line as JSON, raising :class:`Malformed` with a short reason."""
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"invalid JSON: {str(exc).split(':', 1)[0]}") from None


class Source(ABC):
    """Base class of a source adapter; subclasses mostly set attributes and parse input.

    Three kinds of input exist, chosen by :attr:`kind`:

    * ``"lines"``: append-only line files, read from a byte cursor; implement
      :meth:`parse_line`. A partial last line is never consumed.
    * ``"document"``: a whole file rewritten in place (JSON); implement
      :meth:`parse_document`, which returns every record the file holds now. Records are
      upserted by key and never retracted when they vanish from the file.
    * ``"database"``: an SQLite file owned by another program; implement
      :meth:`read_database`, which opens it read-only and returns what changed since the
      watermark it keeps in ``ctx.state``.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind] = "lines"
    suffixes: ClassVar[tuple[str, ...]] = (".jsonl",)
    #: ``"lines"`` sources: byte strings one of which every line that carries something
    #: contains. A ``{…}`` line with none of them is skipped without a call to
    #: :meth:`parse_line`, which must return ``None`` for it and change no state. Most
    #: lines of a transcript are prompts and tool output: this keeps them at a substring
    #: search each. Empty: every line is parsed.
    markers: ClassVar[tuple[bytes, ...]] = ()

    @abstractmethod
    def default_roots(self, settings: Settings) -> list[Path]:
        """Where this agent keeps its logs on this machine, honouring its own env overrides."""

    def roots(self, settings: Settings) -> list[Path]:
        """Roots to scan: the config's explicit ``roots`` if given, else :meth:`default_roots`.

        Roots that do not exist are returned too; callers decide what a missing root means.
        """
        configured = settings.source(self.name).roots
        found = list(configured) if configured else self.default_roots(settings)
        seen: set[Path] = set()
        unique = []
        for root in found:
            if root not in seen:
                seen.add(root)
                unique.append(root)
        return unique

    def owns(self, path: Path) -> bool:
        """Whether a file below one of the roots belongs to this source."""
        return path.name.endswith(self.suffixes)

    def scan(self, root: Path) -> Iterator[Path]:
        """Every owned file below ``root``, recursively, in a stable order."""
        if not root.is_dir():
            return
        # os.scandir on strings: the reconcile sweep runs this every minute, and pathlib's
        # rglob and Path ordering were most of an idle daemon's CPU time.
        found: list[str] = []
        _walk(str(root), self.suffixes, found)
        for name in sorted(found, key=lambda s: s.split(os.sep)):
            path = _PATHS.get(name)
            if path is None:
                if len(_PATHS) >= _MAX_LISTINGS:
                    _PATHS.clear()
                # The same Path object every sweep: parsing and str() are paid once.
                path = _PATHS[name] = Path(name)
            if self.owns(path) and self.target(path) == path:
                yield path

    def target(self, path: Path) -> Path:
        """The file to ingest when ``path`` changed (a database's ``-wal`` maps to the database)."""
        return path

    def new_state(self) -> dict[str, Any]:
        """The carried state of a file read from its first byte."""
        return {}

    def parse_line(self, line: bytes, offset: int, ctx: FileContext) -> Record | None:
        """``lines`` sources: turn one complete line (without its newline) into a record.

        Returns ``None`` for lines that carry no usage. Raises :class:`Malformed` for a line
        that should have been usage (or JSON) but cannot be understood.
        """
        raise NotImplementedError(f"{self.name} is not a line source")

    def parse_document(self, data: bytes, ctx: FileContext) -> list[Record]:
        """``document`` sources: every record the whole file holds now.

        Raises :class:`Malformed` when the file cannot be understood (e.g. caught mid-write);
        it is read again on its next change.
        """
        raise NotImplementedError(f"{self.name} is not a document source")

    def read_database(self, path: Path, ctx: FileContext) -> list[Record] | None:
        """``database`` sources: records new or changed since the watermark in ``ctx.state``.

        Must open the database read-only and hold no lock for long. Returns ``None`` when
        nothing changed (no write transaction is made then). Raises
        :class:`~sufd.errors.SourceError` when the database is locked or unreadable; the file
        is retried on the next change or reconcile.
        """
        raise NotImplementedError(f"{self.name} is not a database source")

    def cost(self, rec: Record, prices: PriceTable) -> float | None:
        """The cost of a record from its tokens, or ``None`` when its model has no price.

        The default applies ccusage's Anthropic-shaped formula (``pricing="anthropic"``) or
        its OpenAI formula (``pricing="openai"``); ``extra_output`` is priced as output.
        """
        if rec.price_model is None:
            return None
        price = prices.lookup(rec.price_model)
        if price is None:
            return None
        return cost_at(price, rec)

    def prefer(self, new: Record, new_cost: float, old: Record, old_cost: float) -> bool:
        """Whether ``new`` replaces ``old`` when both claim the same event slot."""
        return False

    def alias_match(self, new: Record, slot: Record) -> bool:
        """Whether ``new`` belongs to ``slot`` though their keys differ (same ``group``)."""
        return False


def parse_timestamp_ms(value: object) -> int | None:
    """Epoch milliseconds of ``YYYY-MM-DDTHH:MM:SS[.mmm](Z|±HH:MM)``, the only shapes ccusage takes.

    Returns ``None`` for anything else (other fraction lengths, no zone, not a string).
    """
    if not isinstance(value, str):
        return None
    n = len(value)
    # 19 chars of date-time, optional ".mmm", then "Z" or "+HH:MM". The separators are
    # checked here: fromisoformat alone would also take week dates and compact times.
    if n not in (20, 24, 25, 29) or not value.isascii():
        return None
    body_end = 23 if n in (24, 29) else 19
    if body_end == 23 and value[19] != ".":
        return None
    if value[4] != "-" or value[7] != "-" or value[10] != "T" or value[13] != ":":
        return None
    zone = value[body_end:]
    if value[16] != ":" or (
        zone != "Z" and not (len(zone) == 6 and zone[0] in "+-" and zone[3] == ":")
    ):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Outside these years a date is damage, not usage: reports would have to span it.
    if not _MIN_YEAR <= dt.year <= _MAX_YEAR:
        return None
    return (dt - _EPOCH) // _MS


_MIN_YEAR, _MAX_YEAR = 1970, 2099
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def database_signature(path: Path) -> tuple[list[Any], bool]:
    """What changes when an SQLite database is written, read without opening it in SQLite.

    The file's identity, size and mtime, its header's change counter, the ``-wal`` file's
    size and mtime, and the start of the ``-shm`` index. Also whether the database is in WAL
    mode with no ``-wal`` beside it (checkpointed and closed by its owner).
    """
    st = os.stat(path)
    with open(path, "rb") as f:
        head = f.read(100)
    sig: list[Any] = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, head[24:28].hex()]
    try:
        wal = os.stat(f"{path}-wal")
        sig += [wal.st_size, wal.st_mtime_ns]
    except FileNotFoundError:
        sig += [None, None]
    with contextlib.suppress(OSError), open(f"{path}-shm", "rb") as f:
        sig.append(f.read(48).hex())
    return sig, head[18:20] == b"\x02\x02" and sig[5] is None


def looks_like_object(line: bytes) -> bool:
    """Cheap plausibility check for lines not worth parsing: ``{`` … ``}``."""
    if not line.startswith(b"{"):
        return line.lstrip().startswith(b"{") and line.rstrip().endswith(b"}")
    return line.endswith(b"}") or line.rstrip().endswith(b"}")


def short_hash(data: str | bytes) -> str:
    """A short stable digest used to build keys for lines that carry no id of their own."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def symlinked_below(root: Path, directory: Path) -> bool:
    """Whether ``directory`` is reached from ``root`` through a symlinked directory (itself
    included; ``root`` itself may be one).

    What is reached that way is not inside the root: no scan enters a symlinked directory, nor
    does the watcher, so a file is never tracked under two paths.
    """
    if not directory.is_relative_to(root):
        return False
    d = root
    for part in directory.relative_to(root).parts:
        d = d / part
        if os.path.islink(d):
            return True
    return False


def _walk(top: str, suffixes: tuple[str, ...], out: list[str]) -> None:
    """Paths below ``top`` whose names end with ``suffixes``; symlinked dirs are not entered.

    Directories with such names are listed too, so one named like a transcript is reported
    rather than passed over. A directory's listing is reused while its mtime stays the same
    (adding, removing or renaming an entry changes it), so a sweep of an unchanged tree
    costs one ``stat`` per directory rather than a full read of it.
    """
    try:
        mtime = os.stat(top).st_mtime_ns
    except OSError:
        return  # vanished or unreadable meanwhile: the next sweep or the watcher sees it
    key = (top, suffixes)
    cached = _LISTINGS.get(key)
    # A directory changed within the last seconds may change again within the same mtime
    # tick (coarse on some filesystems): list it again until it has been quiet for a while.
    if cached is None or cached[0] != mtime or time.time_ns() - mtime < _QUIET_NS:
        try:
            entries = list(os.scandir(top))
        except OSError:
            _LISTINGS.pop(key, None)
            return
        names = [e.path for e in entries if e.name.endswith(suffixes)]
        subdirs = [e.path for e in entries if _is_dir(e)]
        if len(_LISTINGS) >= _MAX_LISTINGS:
            _LISTINGS.clear()
        cached = _LISTINGS[key] = (mtime, names, subdirs)
    out += cached[1]
    for sub in cached[2]:
        _walk(sub, suffixes, out)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


_LISTINGS: dict[tuple[str, tuple[str, ...]], tuple[int, list[str], list[str]]] = {}
_PATHS: dict[str, Path] = {}
_MAX_LISTINGS = 100_000
_QUIET_NS = 2_000_000_000
