"""ccusage's price lookup for the agents whose models it tries under several names.

Gemini CLI and OpenCode / Kilo CLI records are priced the way ccusage 20.0.24 ``--offline``
prices them: a list of candidate names per model (:func:`gemini_candidates`,
:func:`opencode_candidates`), each looked up in sufd's table and then in the embedded
models.dev snapshot (:func:`find_price`). Which candidate wins is the adapter's rule (Gemini:
the first with a price; OpenCode: the first that costs more than 0).
"""

from __future__ import annotations

import re

from sufd.prices.models_dev import models_dev_price
from sufd.prices.table import ModelPrice, PriceTable

__all__ = ["GEMINI_PREFIXES", "find_price", "gemini_candidates", "opencode_candidates"]

GEMINI_PREFIXES = ("google", "gemini", "vertex_ai", "openrouter/google")
_SUFD_ONLY_KEY = re.compile(r"^gemini[-/]")
_OPENCODE_ALIASES = {"gemini-3-pro-high": "gemini-3-pro-preview", "k2p6": "kimi-k2.6"}
_CLAUDE_FAMILIES = ("claude-haiku-", "claude-opus-", "claude-sonnet-")


def find_price(name: str, prices: PriceTable) -> ModelPrice | None:
    """The price ccusage 20.0.24 ``--offline`` finds for ``name``, or ``None``.

    1. sufd's table, standing in for ccusage's embedded LiteLLM table + built-ins. sufd's
       table also carries LiteLLM's ``gemini-*`` / ``gemini/*`` keys, which ccusage does not
       embed; a hit on one of those counts here only when it is a user price override.
    2. :data:`~sufd.prices.models_dev.MODELS_DEV`, ccusage's fallback (exact, exact-only ids,
       then fuzzy).
    3. Not in ccusage: the sufd table's own Gemini key, rather than leaving a model unpriced
       that models.dev lists under a non-Gemini name sufd does not carry.
    """
    key = prices.resolve(name)
    primary = prices.lookup(name) if key is not None else None
    if key is not None and (not _SUFD_ONLY_KEY.match(key) or _overridden(name, prices)):
        return primary
    found = models_dev_price(name)
    return found if found is not None else primary


def _overridden(name: str, prices: PriceTable) -> bool:
    bundled = PriceTable.bundled()
    return prices is not bundled and prices.lookup(name) != bundled.lookup(name)


def gemini_candidates(model: str) -> list[str]:
    """``google/M``, ``gemini/M``, ``vertex_ai/M``, ``openrouter/google/M``, ``M`` (deduped).

    The prefix order matters: ``google/gemini-3-flash`` (0.4/2.4) differs from
    ``gemini-3-flash`` (0.5/3.0).
    """
    return list(dict.fromkeys([*(f"{p}/{model}" for p in GEMINI_PREFIXES), model]))


def opencode_candidates(model: str, provider: str | None) -> list[str]:
    """ccusage's OpenCode price candidates for ``model`` served by ``provider``: ``M``
    (``gemini-3-pro-high`` → ``gemini-3-pro-preview``, ``k2p6`` → ``kimi-k2.6``),
    ``claude-sonnet-4.5`` / ``claude-sonnet-45`` → ``claude-sonnet-4-5``, then each with
    ``<provider>/`` (``-`` → ``_``)."""
    resolved = _OPENCODE_ALIASES.get(model, model)
    base = list(dict.fromkeys([resolved, _normalise_claude(resolved)]))
    out = list(base)
    if provider and provider != "unknown":
        p = provider.replace("-", "_")
        out += [f"{p}/{m}" for m in base]
    return list(dict.fromkeys(out))


def _normalise_claude(model: str) -> str:
    for family in _CLAUDE_FAMILIES:
        if not model.startswith(family):
            continue
        rest = model[len(family) :]
        major, dot, minor = rest.partition(".")
        if dot and major.isascii() and major.isdigit() and minor[:1].isdigit():
            return f"{family}{major}-{minor}"
        if len(rest) >= 2 and rest[0].isdigit() and rest[1].isdigit():
            return f"{family}{rest[0]}-{rest[1:]}"
    return model
