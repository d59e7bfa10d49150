"""Model prices and the token → USD formulas, following ccusage 20.0.24 (`--offline`).

The bundled table (``sufd/data/prices.json``) is LiteLLM's price list plus the
built-ins ccusage layers over it; ``packaging/build_prices.py`` regenerates it.
Model names resolve the way ccusage resolves them: exact key, alias, then a fuzzy
match at non-alphanumeric boundaries (formats.md §1.3).  All prices inside this
module are USD per token.
"""

from __future__ import annotations

__all__ = ["ModelPrice", "PriceTable", "anthropic_cost", "openai_cost"]

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources

from sufd.errors import ConfigError
from sufd.settings import PRICE_FIELDS, check_price_field

# Anthropic's long-context boundary; ccusage applies it to each token class on its own.
_TIER_TOKENS = 200_000
_CACHE_1H_INPUT_MULTIPLIER = 2.0
# An Anthropic-style release date (claude-sonnet-4-20250514) may follow a key that
# ends in a digit; any other number there is a different model version.
_DATE_SUFFIX_DIGITS = 8
_MILLION = Decimal(1_000_000)

_TABLE_FIELDS = frozenset((*PRICE_FIELDS, "long_context_threshold", "provider"))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """What one model costs, in USD per token, with ccusage's defaults applied.

    Attributes:
        input: Uncached input tokens.
        output: Output tokens (reasoning tokens included).
        cache_write: 5-minute cache writes; ``input * 1.25`` when the table has none.
        cache_read: Cache reads; ``input * 0.1`` when the table has none.
        cache_read_explicit: Whether the table published ``cache_read`` (Codex
            prices cached tokens at ``input`` otherwise).
        input_above_200k: Long-context rate for input, if published.
        output_above_200k: Long-context rate for output, if published.
        cache_write_above_200k: Long-context rate for cache writes, if published.
        cache_read_above_200k: Long-context rate for cache reads, if published.
        fast_multiplier: Factor for ``speed: fast`` / priority requests, if known.
        long_context_threshold: Set when the long-context rates follow the
            whole-request rule (OpenAI: every token of a request whose context
            exceeds this many tokens is billed at the long rates) instead of
            Anthropic's per-class 200k split.
    """

    input: float
    output: float
    cache_write: float
    cache_read: float
    cache_read_explicit: bool
    input_above_200k: float | None = None
    output_above_200k: float | None = None
    cache_write_above_200k: float | None = None
    cache_read_above_200k: float | None = None
    fast_multiplier: float | None = None
    long_context_threshold: int | None = None


class PriceTable:
    """An immutable model → price table with ccusage's name resolution.

    Build one with :meth:`bundled` or :meth:`from_mapping`; :meth:`with_overrides`
    returns a new table.  Lookups are memoised per model name.
    """

    __slots__ = ("_aliases", "_entries", "_memo", "version")

    def __init__(
        self,
        entries: Mapping[str, ModelPrice],
        version: str,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self._entries: dict[str, ModelPrice] = dict(entries)
        self._aliases: dict[str, str] = dict(aliases or {})
        self._memo: dict[str, str | None] = {}
        self.version = version

    @classmethod
    def bundled(cls) -> PriceTable:
        """The table shipped in ``sufd/data/prices.json`` (read once, then cached)."""
        return _bundled()

    @classmethod
    def from_mapping(
        cls,
        models: Mapping[str, Mapping[str, float | str]],
        version: str,
        *,
        aliases: Mapping[str, str] | None = None,
    ) -> PriceTable:
        """Build a table from per-model fields in USD per token.

        Args:
            models: ``{model: {field: value}}`` with fields ``input`` and ``output``
                (required), ``cache_write``, ``cache_read``, ``input_above_200k``,
                ``output_above_200k``, ``cache_write_above_200k``,
                ``cache_read_above_200k``, ``fast_multiplier``,
                ``long_context_threshold``; a string ``provider`` is ignored.
            version: Provenance string recorded with every computed cost.
            aliases: Exact model-name aliases tried before fuzzy matching.

        Raises:
            ValueError: A field is unknown, not a number, negative, or missing.
        """
        entries = {
            str(name): _price_from_fields(str(name), fields) for name, fields in models.items()
        }
        return cls(entries, version, aliases)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, float]]) -> PriceTable:
        """Return a copy with user price overrides applied, the way ccusage applies them.

        Overrides are keyed by model name, with fields ``input``, ``output``,
        ``cache_write``, ``cache_read`` and their ``*_above_200k`` variants in **USD
        per million tokens**, and ``fast_multiplier`` as a plain factor.  Fields left
        out keep the price of the model's exact (or aliased) table entry; a model
        not in the table starts from all-zero prices.  When ``input`` changes and
        the entry's cache prices were derived from it, they scale with it.  The
        overridden name becomes an exact key, so it also takes part in fuzzy
        matching.  The version gets a ``+overrides-<hash>`` suffix.

        Raises:
            ConfigError: A field is unknown or its value is not a finite number >= 0.
        """
        if not overrides:
            return self
        entries = dict(self._entries)
        for model, fields in overrides.items():
            entries[model] = self._overridden(model, _override_fields(model, fields))
        digest = hashlib.sha256(
            json.dumps({m: dict(f) for m, f in overrides.items()}, sort_keys=True).encode()
        ).hexdigest()[:8]
        return PriceTable(entries, f"{self.version}+overrides-{digest}", self._aliases)

    def lookup(self, model: str) -> ModelPrice | None:
        """Price of ``model``, or None when no key matches (ccusage then reports cost 0)."""
        key = self.resolve(model)
        return None if key is None else self._entries[key]

    def resolve(self, model: str) -> str | None:
        """The table key ``lookup(model)`` uses: exact, then alias, then fuzzy."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        key = self._resolve(model)
        self._memo[model] = key
        return key

    def _resolve(self, model: str) -> str | None:
        if not model:
            return None
        if model in self._entries:
            return model
        alias = self._aliases.get(model)
        if alias is not None:
            found = self._find(alias)
            if found is not None:
                return found
        return self._find(model)

    def _find(self, model: str) -> str | None:
        if model in self._entries:
            return model
        normalized = _normalize(model)
        best: str | None = None
        for key in self._entries:
            if not _key_matches(key, model, normalized):
                continue
            # Longest key wins; among equally long keys, the lexicographically smallest.
            if best is None or len(key) > len(best) or (len(key) == len(best) and key < best):
                best = key
        return best

    def _overridden(self, model: str, fields: Mapping[str, float]) -> ModelPrice:
        base = self._entries.get(model)
        if base is None and model in self._aliases:
            base = self._entries.get(self._aliases[model])
        if base is None:
            base = ModelPrice(0.0, 0.0, 0.0, 0.0, False)
        new_input = fields.get("input", base.input)
        scale = 1.0
        if "input" in fields and base.input > 0 and not base.cache_read_explicit:
            scale = new_input / base.input

        def scaled(name: str, value: float) -> float:
            return fields[name] if name in fields else value * scale

        def scaled_opt(name: str, value: float | None) -> float | None:
            if name in fields:
                return fields[name]
            return None if value is None else value * scale

        def given(name: str, value: float | None) -> float | None:
            return fields.get(name, value)

        return replace(
            base,
            input=new_input,
            output=fields.get("output", base.output),
            cache_write=scaled("cache_write", base.cache_write),
            cache_read=scaled("cache_read", base.cache_read),
            cache_read_explicit=base.cache_read_explicit or "cache_read" in fields,
            input_above_200k=given("input_above_200k", base.input_above_200k),
            output_above_200k=given("output_above_200k", base.output_above_200k),
            cache_write_above_200k=scaled_opt(
                "cache_write_above_200k", base.cache_write_above_200k
            ),
            cache_read_above_200k=scaled_opt("cache_read_above_200k", base.cache_read_above_200k),
            fast_multiplier=given("fast_multiplier", base.fast_multiplier),
        )


def anthropic_cost(
    price: ModelPrice,
    *,
    input: int,
    output: int,
    cache_write_5m: int,
    cache_write_1h: int,
    cache_read: int,
    fast: bool,
) -> float:
    """USD for one Anthropic-shaped usage entry (formats.md §1.4, ccusage ``cost.rs``).

    ``input``, the cache writes and ``cache_read`` are disjoint counts.  Pass
    ``cache_creation_input_tokens`` as ``cache_write_5m`` when the log has no 5m/1h
    breakdown.  1-hour cache writes cost twice the input price.  Each token class
    is tiered on its own at 200k tokens (ccusage's approximation), unless the price
    has a ``long_context_threshold``: then the whole entry moves to the long rates
    once its context (input plus all cache tokens) exceeds it.  ``fast`` multiplies
    by the model's fast multiplier, or by 1 when it has none.
    """
    cache_1h = price.input * _CACHE_1H_INPUT_MULTIPLIER
    cache_1h_above = (
        None
        if price.input_above_200k is None
        else price.input_above_200k * _CACHE_1H_INPUT_MULTIPLIER
    )
    threshold = price.long_context_threshold
    if threshold is not None:
        long = input + cache_read + cache_write_5m + cache_write_1h > threshold

        def rate(base: float, above: float | None) -> float:
            return above if long and above is not None else base

        cost = (
            input * rate(price.input, price.input_above_200k)
            + output * rate(price.output, price.output_above_200k)
            + cache_write_5m * rate(price.cache_write, price.cache_write_above_200k)
            + cache_write_1h * rate(cache_1h, cache_1h_above)
            + cache_read * rate(price.cache_read, price.cache_read_above_200k)
        )
    else:
        cost = (
            _tiered(input, price.input, price.input_above_200k)
            + _tiered(output, price.output, price.output_above_200k)
            + _tiered(cache_write_5m, price.cache_write, price.cache_write_above_200k)
            + _tiered(cache_write_1h, cache_1h, cache_1h_above)
            + _tiered(cache_read, price.cache_read, price.cache_read_above_200k)
        )
    if fast and price.fast_multiplier is not None:
        cost *= price.fast_multiplier
    return cost


def openai_cost(price: ModelPrice, *, input: int, cached: int, output: int, fast: bool) -> float:
    """USD for one OpenAI-shaped (Codex) request (formats.md §3.4, ccusage Codex report).

    ``input`` is the *total* input, ``cached`` the part of it served from cache
    (clamped to ``input``); reasoning tokens are inside ``output``.  Cached tokens
    cost ``cache_read`` when the table published it, else ``input``.  There is no
    cache-write term.  A request whose ``input`` exceeds the model's
    ``long_context_threshold`` (200k when unset) is billed entirely at the
    ``*_above_200k`` rates where the model has them, so call this once per
    request, not on summed tokens.  ``fast`` multiplies by the model's fast
    multiplier, or by 1 when it has none (ccusage 20.0.24; formats.md's "else 2"
    describes an older ccusage).
    """
    cached = min(cached, input)
    threshold = price.long_context_threshold
    long = input > (_TIER_TOKENS if threshold is None else threshold)
    in_rate, out_rate = price.input, price.output
    cached_rate = price.cache_read if price.cache_read_explicit else price.input
    if long:
        in_rate = price.input_above_200k if price.input_above_200k is not None else in_rate
        out_rate = price.output_above_200k if price.output_above_200k is not None else out_rate
        if not price.cache_read_explicit:
            cached_rate = in_rate
        elif price.cache_read_above_200k is not None:
            cached_rate = price.cache_read_above_200k
    cost = (input - cached) * in_rate + cached * cached_rate + output * out_rate
    if fast and price.fast_multiplier is not None:
        cost *= price.fast_multiplier
    return cost


def _tiered(tokens: int, base: float, above: float | None) -> float:
    if above is None or tokens <= _TIER_TOKENS:
        return tokens * base
    return _TIER_TOKENS * base + (tokens - _TIER_TOKENS) * above


def _normalize(name: str) -> str:
    return name.replace(".", "-").replace("@", "-")


def _is_boundary(char: str) -> bool:
    # ccusage compares bytes: anything but an ASCII letter or digit separates.
    return not (char.isascii() and char.isalnum())


def _key_matches(key: str, model: str, normalized_model: str) -> bool:
    if _contains(model, key) or _contains(key, model):
        return True
    normalized_key = _normalize(key)
    return _contains(normalized_model, normalized_key) or _contains(
        normalized_key, normalized_model
    )


def _contains(value: str, key: str) -> bool:
    """Whether ``key`` occurs in ``value`` between boundaries (Rust ``match_indices``)."""
    start = 0
    while (index := value.find(key, start)) >= 0:
        if (index == 0 or _is_boundary(value[index - 1])) and _suffix_allows(
            key, value[index + len(key) :]
        ):
            return True
        start = index + max(len(key), 1)
    return False


def _suffix_allows(key: str, suffix: str) -> bool:
    if not suffix:
        return True
    if not _is_boundary(suffix[0]):
        return False
    # `gpt-5` must not match `gpt-5.6-luna`, but `claude-sonnet-4` matches `...-4-20250514`.
    if not (key[-1:].isascii() and key[-1:].isdigit()) or suffix[0] not in "-.":
        return True
    rest = suffix[1:]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    if digits == 0:
        return True
    after = rest[digits : digits + 1]
    return digits == _DATE_SUFFIX_DIGITS and (not after or _is_boundary(after))


def _number(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def _price_from_fields(model: str, fields: Mapping[str, float | str]) -> ModelPrice:
    unknown = set(fields) - _TABLE_FIELDS
    if unknown:
        raise ValueError(f"{model}: unknown price fields {sorted(unknown)}")
    if "input" not in fields or "output" not in fields:
        raise ValueError(f"{model}: input and output prices are required")
    values = {
        name: _number(f"{model}: {name}", fields[name]) for name in PRICE_FIELDS if name in fields
    }
    threshold = fields.get("long_context_threshold")
    input_price = values["input"]
    return ModelPrice(
        input=input_price,
        output=values["output"],
        cache_write=values.get("cache_write", input_price * 1.25),
        cache_read=values.get("cache_read", input_price * 0.1),
        cache_read_explicit="cache_read" in values,
        input_above_200k=values.get("input_above_200k"),
        output_above_200k=values.get("output_above_200k"),
        cache_write_above_200k=values.get("cache_write_above_200k"),
        cache_read_above_200k=values.get("cache_read_above_200k"),
        fast_multiplier=values.get("fast_multiplier"),
        long_context_threshold=(
            None
            if threshold is None
            else int(_number(f"{model}: long_context_threshold", threshold))
        ),
    )


def _override_fields(model: str, fields: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in fields.items():
        check_price_field(name, f"price override for {model!r}: {name!r}")
        try:
            number = _number(f"price override {model!r}.{name}", value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        # Per-million prices are decimal strings to users; convert without float drift.
        out[name] = number if name == "fast_multiplier" else float(Decimal(repr(number)) / _MILLION)
    return out


@functools.cache
def _bundled() -> PriceTable:
    text = (
        resources.files("sufd").joinpath("data").joinpath("prices.json").read_text(encoding="utf-8")
    )
    data = json.loads(text)
    return PriceTable.from_mapping(data["models"], data["version"], aliases=data["aliases"])
