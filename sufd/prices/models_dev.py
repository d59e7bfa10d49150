"""ccusage's embedded models.dev snapshot (its Gemini ids) and ccusage's lookup over it.

ccusage's embedded LiteLLM table has no Gemini keys, so Gemini models (from Gemini CLI, and
OpenCode's and Kilo CLI's Gemini models) resolve in the models.dev snapshot it embeds as well.
:data:`MODELS_DEV` is the Gemini part of that snapshot as ccusage 20.0.24 loads it
(``packaging/build_models_dev.py`` writes it from the binary into ``sufd/data/``; a test
derives it again and compares).
models.dev long-context tiers switch the **whole request** to the tier rates once input +
cache reads exceed the tier size (e.g. gemini-2.5-pro above 200k).

:func:`models_dev_price` is ccusage's ``find_entry`` over it; :mod:`sufd.prices.lookup` puts
it behind sufd's own table the way ccusage does.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sufd.prices.table import ModelPrice, PriceTable

__all__ = ["MODELS_DEV", "models_dev_price"]

Tier = tuple[int, float | None, float | None, float | None, float | None]
Entry = tuple[float, float, float | None, float | None, Tier | None, bool]


def _load() -> dict[str, Entry]:
    """``sufd/data/models_dev.json`` (written by ``packaging/build_models_dev.py``)."""
    raw = json.loads(
        resources.files("sufd").joinpath("data").joinpath("models_dev.json").read_text("utf-8")
    )
    return {
        key: (inp, out, read, write, None if tier is None else tuple(tier), exact)
        for key, (inp, out, read, write, tier, exact) in raw.items()
    }


# models.dev id → (input, output, cache_read, cache_write, (tier size, input, output,
# cache_read, cache_write) | None, exact_only), USD per Mtok, as ccusage 20.0.24 embeds them.
MODELS_DEV: dict[str, Entry] = _load()


def models_dev_price(name: str) -> ModelPrice | None:
    """ccusage's ``find_entry`` over the embedded models.dev snapshot (Gemini ids)."""
    table, exact_only, spellings = _models_dev()
    if (price := table.lookup(name)) is not None and table.resolve(name) == name:
        return price
    spelled = spellings.get(_spelling(name))
    if spelled is not None:
        return exact_only.get(spelled) if spelled else None
    if name in exact_only:
        return exact_only[name]
    return table.lookup(name)


_MD_CACHE: list[tuple[PriceTable, dict[str, ModelPrice], dict[str, str]]] = []


def _models_dev() -> tuple[PriceTable, dict[str, ModelPrice], dict[str, str]]:
    """(fuzzy table of the ordinary ids, exact-only ids, spelling → exact-only id or "")."""
    if _MD_CACHE:
        return _MD_CACHE[0]
    fields = {k: _md_fields(v) for k, v in MODELS_DEV.items()}
    ordinary = {k: f for k, f in fields.items() if not MODELS_DEV[k][5]}
    special = PriceTable.from_mapping({k: f for k, f in fields.items() if MODELS_DEV[k][5]}, "md")
    exact_only = {k: p for k in MODELS_DEV if (p := special.lookup(k)) is not None}
    spellings: dict[str, str] = {}
    for k in exact_only:
        s = _spelling(k)
        spellings[s] = "" if s in spellings and spellings[s] != k else k
    _MD_CACHE.append((PriceTable.from_mapping(ordinary, "models.dev"), exact_only, spellings))
    return _MD_CACHE[0]


def _spelling(name: str) -> str:
    return name.replace(".", "-").replace("@", "-")


def _md_fields(entry: tuple[Any, ...]) -> dict[str, float]:
    inp, out, cache_read, cache_write, tier, _ = entry
    fields: dict[str, float] = {"input": inp / 1_000_000.0, "output": out / 1_000_000.0}
    if cache_read is not None:
        fields["cache_read"] = cache_read / 1_000_000.0
    if cache_write is not None:
        fields["cache_write"] = cache_write / 1_000_000.0
    if tier is not None:
        fields["long_context_threshold"] = tier[0]
        classes = ("input", "output", "cache_read", "cache_write")
        for name, value in zip(classes, tier[1:], strict=True):
            if value is not None:
                fields[f"{name}_above_200k"] = value / 1_000_000.0
    return fields
