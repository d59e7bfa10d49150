"""ccusage's embedded models.dev snapshot (its Gemini ids) and ccusage's lookup over it.

ccusage's embedded LiteLLM table has no Gemini keys, so Gemini models (from Gemini CLI, and
OpenCode's and Kilo CLI's Gemini models) resolve in the models.dev snapshot it embeds as well.
:data:`MODELS_DEV` is the Gemini part of that snapshot as ccusage 20.0.24 loads it
(``tests/gen_gemini_opencode.py`` re-derives it from the binary, and a test compares).
models.dev long-context tiers switch the **whole request** to the tier rates once input +
cache reads exceed the tier size (e.g. gemini-2.5-pro above 200k).

:func:`models_dev_price` is ccusage's ``find_entry`` over it; :mod:`sufd.prices.lookup` puts
it behind sufd's own table the way ccusage does.
"""

from __future__ import annotations

from typing import Any

from sufd.prices.table import ModelPrice, PriceTable

__all__ = ["MODELS_DEV", "models_dev_price"]

Tier = tuple[int, float | None, float | None, float | None, float | None]
# models.dev id → (input, output, cache_read, cache_write, (tier size, input, output,
# cache_read, cache_write) | None, exact_only), USD per Mtok, as ccusage 20.0.24 embeds them.
MODELS_DEV: dict[str, tuple[float, float, float | None, float | None, Tier | None, bool]] = {
    "databricks-gemini-2-5-flash": (0.3, 2.5, 0.03, None, None, False),
    "databricks-gemini-2-5-pro": (1.25, 10, 0.125, None, (200000, 2.5, 15, 0.25, None), False),
    "databricks-gemini-3-1-flash-lite": (0.25, 1.5, 0.025, None, None, False),
    "databricks-gemini-3-1-pro": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "databricks-gemini-3-flash": (0.5, 3, 0.05, None, None, False),
    "databricks-gemini-3-pro": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "gemini-2.0-flash-lite": (0.075, 0.3, None, None, None, True),
    "gemini-2.0-pro-exp-02-05": (1.989, 7.956, 0.49725, None, None, False),
    "gemini-2.0-pro-reasoner": (1.292, 4.998, 0.323, None, None, False),
    "gemini-2.5-computer-use-preview-10-2025": (
        1.25,
        10,
        None,
        None,
        (200000, 2.5, 15, None, None),
        False,
    ),
    "gemini-2.5-flash": (0.3, 2.5, 0.03, None, None, False),
    "gemini-2.5-flash-lite": (0.1, 0.4, 0.01, None, None, True),
    "gemini-2.5-flash-lite-preview-06-17": (0.15, 0.6, 0.015, None, None, True),
    "gemini-2.5-flash-lite-preview-09-2025": (0.1, 0.4, 0.01, None, None, True),
    "gemini-2.5-flash-lite-preview-09-2025-thinking": (0.1, 0.4, 0.01, None, None, True),
    "gemini-2.5-flash-lite@eu": (0.1, 0.4, 0.01, 0.18333, None, True),
    "gemini-2.5-flash-nothink": (0.3, 2.5, None, None, None, True),
    "gemini-2.5-flash-nothinking": (0.3, 2.5, 0.03, None, None, True),
    "gemini-2.5-flash-preview-04-17": (0.15, 0.6, 0.015, None, None, True),
    "gemini-2.5-flash-preview-04-17:thinking": (0.15, 3.5, 0.015, None, None, True),
    "gemini-2.5-flash-preview-05-20": (0.15, 0.6, 0.015, None, None, True),
    "gemini-2.5-flash-preview-05-20:thinking": (0.15, 3.5, 0.015, None, None, True),
    "gemini-2.5-flash-preview-09-2025": (0.3, 2.5, 0.03, None, None, True),
    "gemini-2.5-flash-preview-09-2025-thinking": (0.3, 2.5, 0.03, None, None, True),
    "gemini-2.5-flash@eu": (0.3, 2.5, 0.075, 0.55, None, True),
    "gemini-2.5-pro": (1.25, 10, 0.125, None, (200000, 2.5, 15, 0.25, None), False),
    "gemini-2.5-pro-exp-03-25": (2.5, 10, 0.25, None, None, True),
    "gemini-2.5-pro-preview-03-25": (2.5, 10, 0.25, None, None, True),
    "gemini-2.5-pro-preview-05-06": (2.5, 10, 0.25, None, None, True),
    "gemini-2.5-pro-preview-06-05": (2.5, 10, 0.25, None, None, True),
    "gemini-2.5-pro@eu": (1.25, 10, 0.31, 2.375, (200000, 2.5, 15, 0.62, 4.75), True),
    "gemini-3-1-pro": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "gemini-3-flash": (0.5, 3, 0.05, 0.083333, None, False),
    "gemini-3-flash-preview": (0.5, 3, 0.05, None, None, False),
    "gemini-3-pro": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "gemini-3-pro-preview": (2, 12, 0.19999999999999998, None, None, False),
    "gemini-3.1-flash-lite": (0.25, 1.5, 0.025, None, None, False),
    "gemini-3.1-flash-lite-preview": (0.25, 1.5, 0.025, None, None, True),
    "gemini-3.1-flash-lite@eu": (0.275, 1.65, 0.0275, 0.091663, None, True),
    "gemini-3.1-pro-preview": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "gemini-3.1-pro-preview-customtools": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), True),
    "gemini-3.5-flash": (1.5, 9, 0.15, None, None, False),
    "gemini-3.5-flash-lite": (0.3, 2.5, 0.03, None, None, True),
    "gemini-3.5-flash-lite@eu": (0.33, 2.75, 0.033, None, None, True),
    "gemini-3.5-flash-thinking": (1.5, 9, None, None, None, True),
    "gemini-3.5-flash@eu": (1.65, 9.9, 0.165, 1.7413, None, True),
    "gemini-3.6-flash": (0.75, 3.75, 0.075, None, None, False),
    "gemini-3.7-flash": (0.75, 3.75, 0.075, None, None, False),
    "gemini-3.7-flash@eu": (0.825, 4.125, 0.0825, None, None, True),
    "gemini-3.8-flash": (0.75, 3.75, 0.075, None, None, False),
    "gemini-3.8-flash@eu": (0.825, 4.125, 0.0825, None, None, True),
    "gemini-embedding-001": (0.15, 0, None, None, None, False),
    "gemini-embedding-2": (0.2, 0, None, None, None, False),
    "gemini-exp-1206": (1.258, 4.998, 0.629, None, None, False),
    "gemini-flash-latest": (0.75, 3.75, 0.075, None, None, True),
    "gemini-flash-lite-latest": (0.3, 2.5, 0.03, None, None, True),
    "gemini-pro-latest": (2, 12, 0.2, None, None, True),
    "gemini/gemini-2.5-flash": (0.3, 2.5, 0.03, 0.3, None, False),
    "gemini/gemini-2.5-flash-lite": (0.1, 0.4, 0.01, 0.1, None, False),
    "gemini/gemini-2.5-pro": (1.25, 10, 0.125, 1.25, (200000, 2.5, 15, 0.25, 2.5), False),
    "gemini/gemini-3-flash-preview": (0.5, 3, 0.05, 0.5, None, False),
    "gemini/gemini-3.1-pro-preview": (2, 12, 0.2, 2, (200000, 4, 18, 0.4, 4), False),
    "gemini/gemini-3.5-flash": (1.5, 9, 0.15, 1.5, None, False),
    "gemini/gemini-3.5-flash-lite": (0.3, 2.5, 0.03, 0.3, None, False),
    "gemini/gemini-3.6-flash": (0.75, 3.75, 0.075, 0.75, None, False),
    "gemini/gemini-3.7-flash": (0.75, 3.75, 0.075, 0.75, None, False),
    "gemini/gemini-3.8-flash": (0.75, 3.75, 0.075, 0.75, None, False),
    "google-ai-studio/gemini-2.5-flash": (0.3, 2.5, 0.03, None, None, False),
    "google-ai-studio/gemini-2.5-flash-lite": (0.1, 0.4, 0.01, None, None, False),
    "google-ai-studio/gemini-2.5-pro": (
        1.25,
        10,
        0.125,
        None,
        (200000, 2.5, 15, 0.25, None),
        False,
    ),
    "google-ai-studio/gemini-3-flash-preview": (0.5, 3, 0.05, None, None, False),
    "google-ai-studio/gemini-3.1-flash-lite": (0.25, 1.5, 0.025, 0.08333, None, False),
    "google-ai-studio/gemini-3.1-pro-preview": (
        2,
        12,
        0.2,
        None,
        (200000, 4, 18, 0.4, None),
        False,
    ),
    "google-ai-studio/gemini-3.5-flash": (1.5, 9, 0.15, 0.08333, None, False),
    "google-ai-studio/gemini-3.5-flash-lite": (0.3, 2.5, 0.03, 0.08333, None, False),
    "google-ai-studio/gemini-3.6-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google-ai-studio/gemini-3.7-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google-ai-studio/gemini-3.8-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google-ai-studio/gemini-pro-latest": (2, 12, 0.2, None, None, True),
    "google-vertex/gemini-2.5-flash": (0.3, 2.5, 0.03, None, None, False),
    "google-vertex/gemini-2.5-flash-lite": (0.1, 0.4, 0.01, None, None, False),
    "google-vertex/gemini-2.5-pro": (1.25, 10, 0.125, None, (200000, 2.5, 15, 0.25, None), False),
    "google-vertex/gemini-3-flash-preview": (0.5, 3, 0.05, None, None, False),
    "google-vertex/gemini-3.1-flash-lite": (0.25, 1.5, 0.025, 0.08333, None, False),
    "google-vertex/gemini-3.1-pro-preview": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "google-vertex/gemini-3.5-flash": (1.5, 9, 0.15, 0.08333, None, False),
    "google-vertex/gemini-3.5-flash-lite": (0.3, 2.5, 0.03, 0.08333, None, False),
    "google-vertex/gemini-3.6-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google-vertex/gemini-3.7-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google-vertex/gemini-3.8-flash": (0.75, 3.75, 0.075, 0.08333, None, False),
    "google/gemini-2.0-flash": (0.1, 0.42, None, None, None, False),
    "google/gemini-2.0-flash-lite": (0.052, 0.21, None, None, None, False),
    "google/gemini-2.5-computer-use-preview-10-2025": (1.25, 10, None, None, None, False),
    "google/gemini-2.5-flash": (0.3, 2.5, 0.03, 0.083333, None, False),
    "google/gemini-2.5-flash-lite": (0.1, 0.4, 0.01, 0.083333, None, False),
    "google/gemini-2.5-pro": (1.25, 10, 0.125, 0.375, (200000, 2.5, 15, 0.25, None), False),
    "google/gemini-2.5-pro-preview": (1.25, 10, 0.125, 0.375, (200000, 2.5, 15, 0.25, None), False),
    "google/gemini-3-flash": (0.4, 2.4, 0.04, None, None, False),
    "google/gemini-3-flash-preview": (0.5, 3, 0.05, None, (200000, 0.5, 3, 0.05, None), False),
    "google/gemini-3-flash-preview-thinking": (0.5, 3, 0.05, None, None, False),
    "google/gemini-3-pro": (1.6, 9.6, 0.16, None, None, False),
    "google/gemini-3-pro-preview": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "google/gemini-3.1-flash-lite": (0.25, 1.5, 0.025, 0.083333, None, False),
    "google/gemini-3.1-flash-lite-preview": (0.25, 1.5, 0.025, 0.083333, None, False),
    "google/gemini-3.1-pro": (2, 12, 0.2, None, None, False),
    "google/gemini-3.1-pro-preview": (2, 12, 0.2, 0.375, (200000, 4, 18, 0.4, None), False),
    "google/gemini-3.1-pro-preview-customtools": (
        2,
        12,
        0.2,
        0.375,
        (200000, 4, 18, 0.4, None),
        False,
    ),
    "google/gemini-3.1-pro-preview-high": (2, 12, 0.2, 0.375, None, False),
    "google/gemini-3.1-pro-preview-low": (2, 12, 0.2, 0.375, None, False),
    "google/gemini-3.5-flash": (1.5, 9, 0.15, 0.083333, None, False),
    "google/gemini-3.5-flash-lite": (0.3, 2.5, 0.03, 0.083333, None, False),
    "google/gemini-3.5-flash-thinking": (1.5, 9, 0.15, 0.083333, None, False),
    "google/gemini-3.6-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "google/gemini-3.7-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "google/gemini-3.8-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "google/gemini-deep-research": (1.6, 9.6, None, None, None, True),
    "google/gemini-embedding-001": (0.15, 0, None, None, None, False),
    "google/gemini-flash-latest": (0.75, 3.75, 0.075, 0.041667, None, True),
    "google/gemini-flash-lite-latest": (0.3, 2.5, 0.03, 0.08333, None, True),
    "google/gemini-omni-flash-preview": (1.5, 9, None, None, None, True),
    "google/gemini-pro-latest": (2, 12, 0.2, 0.375, (200000, 4, 18, 0.4, None), True),
    "google/gemini-robotics-er-1.6-preview": (1, 5, None, None, None, False),
    "quartz/gemini-3.1-pro-preview": (2, 12, 0.2, None, (200000, 4, 18, 0.4, None), False),
    "vertex/gemini-3-flash-preview": (0.5, 3, 0.05, 0.083333, None, False),
    "vertex/gemini-3.1-flash-lite": (0.25, 1.5, 0.025, 0.083333, None, False),
    "vertex/gemini-3.1-flash-lite@eu": (0.25, 1.5, 0.025, 0.083333, None, False),
    "vertex/gemini-3.1-flash-lite@us": (0.25, 1.5, 0.025, 0.083333, None, False),
    "vertex/gemini-3.1-pro-preview": (2, 12, 0.2, 0.375, (200000, 4, 18, 0.4, 0.25), False),
    "vertex/gemini-3.5-flash": (1.5, 9, 0.15, 0.083333, None, False),
    "vertex/gemini-3.5-flash-lite": (0.3, 2.5, 0.03, 0.083333, None, False),
    "vertex/gemini-3.5-flash-lite@eu": (0.3, 2.5, 0.03, 0.083333, None, False),
    "vertex/gemini-3.5-flash-lite@us": (0.3, 2.5, 0.03, 0.083333, None, False),
    "vertex/gemini-3.5-flash@eu": (1.5, 9, 0.15, 0.083333, None, False),
    "vertex/gemini-3.5-flash@us": (1.5, 9, 0.15, 0.083333, None, False),
    "vertex/gemini-3.6-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.6-flash@eu": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.6-flash@us": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.7-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.7-flash@eu": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.7-flash@us": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.8-flash": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.8-flash@eu": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-3.8-flash@us": (0.75, 3.75, 0.075, 0.041667, None, False),
    "vertex/gemini-flash-latest": (0.75, 3.75, 0.075, 0.041667, None, True),
    "vertex/gemini-pro-latest": (2, 12, 0.2, 0.375, (200000, 4, 18, 0.4, 0.25), True),
    "vertexai/gemini-3.7-flash": (0.75, 3.75, 0.075, None, None, False),
    "vertexai/gemini-3.7-flash-eu": (0.75, 3.75, 0.075, None, None, False),
    "~google/gemini-flash-latest": (0.75, 3.75, 0.075, 0.041667, None, True),
    "~google/gemini-pro-latest": (2, 12, 0.2, 0.375, (200000, 4, 18, 0.4, None), True),
}


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
