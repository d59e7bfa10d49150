"""Build ``sufd/data/prices.json`` from a pinned LiteLLM wheel plus ccusage's built-ins.

The table sufd ships is LiteLLM's ``model_prices_and_context_window_backup.json``
(as packaged in the ``litellm`` wheel of one pinned version), cut down to the
keys and fields sufd prices with, with the built-in prices, aliases and fast
multipliers ccusage layers over it (``packaging/ccusage_builtins.json``).

Usage::

    python packaging/build_prices.py                      # pip download the pinned wheel
    python packaging/build_prices.py --wheel litellm.whl  # use a wheel already on disk

Prices in the output are USD per token.  Missing cache prices are left out on
purpose: ``sufd.prices.table`` derives them (input x 1.25 / x 0.1) and needs to know
the cache-read price was not published (Codex prices such tokens at input).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["build_table", "main", "render"]

LITELLM_VERSION = "1.110.2"
JSON_MEMBER = "litellm/model_prices_and_context_window_backup.json"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_BUILTINS = REPO / "packaging" / "ccusage_builtins.json"
DEFAULT_OUTPUT = REPO / "sufd" / "data" / "prices.json"

# sufd keeps more keys than ccusage embeds: Gemini CLI models (ccusage prices them
# from models.dev, which sufd does not ship) and OpenAI's bare o-series ids, which
# ccusage can only reach through a fuzzy match onto reseller keys LiteLLM has since
# dropped.  Neither kind of key contains, or is contained in, a claude-/gpt- id at
# a boundary, so adding them cannot change how those ids resolve.
SUFD_EXTRA_KEY = re.compile(r"^(gemini-|gemini/|o[1-9](-|$))")

_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_creation_input_token_cost": "cache_write",
    "cache_read_input_token_cost": "cache_read",
    "input_cost_per_token_above_200k_tokens": "input_above_200k",
    "output_cost_per_token_above_200k_tokens": "output_above_200k",
    "cache_creation_input_token_cost_above_200k_tokens": "cache_write_above_200k",
    "cache_read_input_token_cost_above_200k_tokens": "cache_read_above_200k",
}
_BUILTIN_PRICE_KEYS = set(_FIELDS.values())
_MILLION = Decimal(1_000_000)


def _per_token(per_million: float) -> float:
    """Convert a per-Mtok price exactly (``0.3 / 1e6`` in floats is one ulp off ``3e-7``)."""
    return float(Decimal(repr(per_million)) / _MILLION)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _FastMultipliers:
    """ccusage's ``FastMultiplierOverrides.multiplier_for`` as ccusage 20.0.24 behaves.

    Exact keys also match one ``/``- or ``:``-separated segment of the model id:
    20.0.24 bills ``azure/gpt-5.5`` fast at x2.5 and ``azure/gpt-5.4-2026-03-05`` at x1,
    which the newer source (exact match on the whole id only) would not.
    """

    def __init__(self, spec: Mapping[str, Any], aliases: Mapping[str, str]) -> None:
        self.exact: dict[str, float] = {str(k): float(v) for k, v in spec["exact"].items()}
        self.prefix: dict[str, float] = {
            str(k): float(v) for k, v in spec["normalized_prefix"].items()
        }
        self.aliases = aliases

    def multiplier_for(self, model: str) -> float | None:
        alias = self.aliases.get(model)
        for name in (model, alias, *re.split(r"[/:]", model)):
            if name is not None and name in self.exact:
                return self.exact[name]
        normalized = re.sub(r"[.@]", "-", model)
        for part in re.split(r"[/:]", normalized):
            for base, multiplier in self.prefix.items():
                index = part.rfind(base)
                if index < 0:
                    continue
                rest = part[index + len(base) :]
                if rest == "" or rest.startswith("-"):
                    return multiplier
        return None


def _litellm_entry(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    entry: dict[str, Any] = {}
    for source, target in _FIELDS.items():
        value = _number(raw.get(source))
        if value is not None:
            entry[target] = value
    if "input" not in entry or "output" not in entry:
        return None
    specific = raw.get("provider_specific_entry")
    if isinstance(specific, Mapping):
        fast = _number(specific.get("fast"))
        if fast is not None:
            entry["fast_multiplier"] = fast
    provider = raw.get("litellm_provider")
    if isinstance(provider, str):
        entry["provider"] = provider
    return entry


def _builtin_entry(spec: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "mode":
            continue
        if key not in _BUILTIN_PRICE_KEYS:
            raise ValueError(f"unknown built-in price field {key!r}")
        number = _number(value)
        if number is None:
            raise ValueError(f"built-in price {key!r} is not a number: {value!r}")
        entry[key] = _per_token(number)
    if "input" not in entry or "output" not in entry:
        raise ValueError("a built-in needs input and output prices")
    entry["provider"] = "ccusage-builtin"
    return entry


_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
_ABOVE_KEYS = (
    "input_above_200k",
    "output_above_200k",
    "cache_write_above_200k",
    "cache_read_above_200k",
)


def _fill_long_context(
    table: dict[str, dict[str, Any]],
    tiers: Mapping[str, Mapping[str, Any]],
    aliases: Mapping[str, str],
) -> None:
    """ccusage's ``fill_long_context_rates_from_models_dev``, over the tiers we carry."""
    for key, entry in table.items():
        if any(field in entry for field in _ABOVE_KEYS):
            continue
        base = _DATE_SUFFIX.sub("", key)
        tier = tiers.get(aliases.get(base, base)) or tiers.get(base)
        if tier is None:
            continue
        for field, value in tier.items():
            if field == "threshold":
                entry["long_context_threshold"] = int(value)
            elif field in ("input", "output", "cache_write", "cache_read"):
                entry[f"{field}_above_200k"] = _per_token(float(value))
            else:
                raise ValueError(f"long_context.{key}: unknown field {field!r}")


def build_table(litellm: Mapping[str, Any], builtins: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"aliases": ..., "models": {model: fields}}`` from LiteLLM and the built-ins.

    The order of operations is ccusage's ``PricingMap::load_embedded``: filter and
    load the LiteLLM entries (fast multiplier from ``provider_specific_entry.fast``,
    else the override file), apply the built-ins by mode, then fill long-context
    tiers into entries that publish none.
    """
    prefixes = tuple(builtins["litellm_key_prefixes"])
    aliases: dict[str, str] = dict(builtins["aliases"])
    fast = _FastMultipliers(builtins["fast_multiplier_overrides"], aliases)
    table: dict[str, dict[str, Any]] = {}
    for key, raw in litellm.items():
        if not isinstance(raw, Mapping):
            continue
        if not (key.startswith(prefixes) or SUFD_EXTRA_KEY.match(key)):
            continue
        entry = _litellm_entry(raw)
        if entry is None:
            continue
        if "fast_multiplier" not in entry:
            multiplier = fast.multiplier_for(key)
            if multiplier is not None:
                entry["fast_multiplier"] = multiplier
        table[key] = entry

    for key, spec in builtins["models"].items():
        mode = spec["mode"]
        entry = _builtin_entry(spec)
        existing = table.get(key)
        if mode == "patch_cache" and existing is not None:
            existing.setdefault("cache_read", entry["cache_read"])
            existing.setdefault("cache_write", entry["cache_write"])
            continue
        if mode == "fill" and existing is not None:
            continue
        if mode not in ("fill", "force", "patch_cache"):
            raise ValueError(f"{key}: unknown built-in mode {mode!r}")
        # Forced entries keep x1 in ccusage (no override lookup), filled ones look it up.
        multiplier = fast.multiplier_for(key) if mode != "force" else None
        if multiplier is not None:
            entry["fast_multiplier"] = multiplier
        table[key] = entry
    _fill_long_context(table, builtins["long_context"], aliases)
    return {"aliases": aliases, "models": table}


def render(document: Mapping[str, Any]) -> str:
    """Serialise with sorted keys, one model per line, so regenerations diff well."""
    lines = ["{"]
    top = sorted(document)
    for index, key in enumerate(top):
        comma = "," if index < len(top) - 1 else ""
        value = document[key]
        if key == "models":
            lines.append('  "models":{')
            names = sorted(value)
            for n, name in enumerate(names):
                body = json.dumps(value[name], sort_keys=True, separators=(",", ":"))
                sep = "," if n < len(names) - 1 else ""
                lines.append(f"    {json.dumps(name)}:{body}{sep}")
            lines.append("  }" + comma)
        else:
            body = json.dumps(value, sort_keys=True, separators=(",", ":"))
            lines.append(f"  {json.dumps(key)}:{body}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _download_wheel(version: str, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        f"litellm=={version}",
    ]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob(f"litellm-{version}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no litellm-{version} wheel in {dest}")
    return wheels[0]


def _read_wheel(wheel: Path) -> tuple[bytes, str]:
    match = re.match(r"litellm-([^-]+)-", wheel.name)
    if match is None:
        raise ValueError(f"{wheel.name} is not a litellm wheel")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(JSON_MEMBER), match.group(1)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Regenerate sufd/data/prices.json from LiteLLM + ccusage built-ins.",
    )
    parser.add_argument(
        "--litellm-version",
        default=LITELLM_VERSION,
        help="litellm version to pip download (default: %(default)s)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        help="use this litellm wheel instead of downloading one",
    )
    parser.add_argument(
        "--builtins",
        type=Path,
        default=DEFAULT_BUILTINS,
        help="ccusage built-ins file (default: packaging/ccusage_builtins.json)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the table (default: sufd/data/prices.json)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the price table; return the process exit code."""
    args = _parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sufd-prices-") as tmp:
        wheel = args.wheel or _download_wheel(args.litellm_version, Path(tmp))
        raw, version = _read_wheel(wheel)
    builtins = json.loads(args.builtins.read_text(encoding="utf-8"))
    built = build_table(json.loads(raw), builtins)
    document = {
        "aliases": built["aliases"],
        "generated_from": {
            "builtins": f"packaging/ccusage_builtins.json revision {builtins['revision']}",
            "ccusage_version": builtins["ccusage_version"],
            "litellm": f"litellm=={version} {JSON_MEMBER}",
            "litellm_sha256": hashlib.sha256(raw).hexdigest(),
            "unit": "USD per token",
        },
        "models": built["models"],
        "version": f"litellm-{version}+builtins-{builtins['revision']}",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(document), encoding="utf-8")
    print(f"{args.output}: {len(built['models'])} models, version {document['version']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
