"""Build ``sufd/data/models_dev.json``: the Gemini part of the models.dev snapshot that
ccusage 20.0.24 embeds, as ccusage loads it.

ccusage's embedded LiteLLM table has no Gemini keys, so it prices Gemini models from a
models.dev snapshot compiled into its native binary. This script pulls that snapshot out of
the pinned binary (from the npm package ``@ccusage/ccusage-linux-x64``, which ``.ci/run``
installs) and applies ccusage's load rules, so sufd prices Gemini exactly as ccusage does.

Usage::

    python packaging/build_models_dev.py                   # the binary .ci/run installs
    python packaging/build_models_dev.py --binary PATH     # another copy of it

Each entry: models.dev id → ``[input, output, cache_read, cache_write, tier, exact_only]``,
USD per million tokens; ``tier`` is ``[size, input, output, cache_read, cache_write]`` or
null.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ccusage_snapshots", "main", "models_dev_gemini", "render"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BINARY = (
    REPO / ".ci" / "node_modules" / "@ccusage" / "ccusage-linux-x64" / "bin" / "ccusage"
)
DEFAULT_OUTPUT = REPO / "sufd" / "data" / "models_dev.json"


def ccusage_snapshots(binary: Path) -> dict[str, Any]:
    """The embedded ``litellm``, ``models_dev`` and ``rules`` JSON of a ccusage native binary.

    ccusage ships them as raw deflate streams (``pricing.rs`` ``inflate_snapshot``); they are
    found by trying to inflate at every offset whose first byte can start a compressed block.
    """
    blob = binary.read_bytes()
    found: dict[str, Any] = {}
    for i in range(len(blob)):
        if (blob[i] >> 1) & 3 not in (1, 2):
            continue
        try:
            head = zlib.decompressobj(-15).decompress(blob[i : i + 400], 64)
        except zlib.error:
            continue
        if not head.startswith(b'{"'):
            continue
        try:
            data = json.loads(zlib.decompressobj(-15).decompress(blob[i : i + 4_000_000]))
        except (zlib.error, ValueError):
            continue
        if "assetPricedModelIds" in data:
            found["rules"] = data
        elif any(isinstance(v, dict) and "cost" in v for v in list(data.values())[:5]):
            found["models_dev"] = data
        else:
            found["litellm"] = data
        if len(found) == 3:
            break
    return found


def models_dev_gemini(snap: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The models.dev entries ccusage 20.0.24 loads whose id contains ``gemini``.

    Applies ccusage's load rules (``load_models_dev_models``): asset-priced ids skipped, all-zero
    costs skipped, one slot per normalised spelling (the stronger claim wins), the lowest context
    tier kept. Same tuple shape as :data:`sufd.prices.models_dev.MODELS_DEV`.
    """
    md, asset = snap["models_dev"], set(snap["rules"]["assetPricedModelIds"])
    out: dict[str, tuple[Any, ...]] = {}
    claims: dict[str, tuple[tuple[Any, ...], str]] = {}
    for key in sorted(k for k in md if "gemini" in k.lower()):
        value = md[key]
        if _norm(key) in asset:
            continue
        mid = value.get("id") or key
        cost = value.get("cost") or {}
        if cost.get("input") is None or cost.get("output") is None:
            continue
        if cost["input"] == 0 and cost["output"] == 0:
            continue
        tiers = [
            x
            for x in cost.get("tiers", [])
            if (x.get("tier") or {}).get("type") == "context" and (x["tier"].get("size") or 0) > 0
        ]
        tier = min(tiers, key=lambda x: x["tier"]["size"]) if tiers else None
        claim = (tier is not None, "cache_read" in cost, "cache_write" in cost, "limit" in value)
        previous = claims.get(_norm(mid))
        if previous is None and mid in out:
            continue
        if previous is not None and previous[0] >= claim:
            continue
        if previous is not None:
            out.pop(previous[1], None)
        tier_t = None
        if tier is not None:
            tier_t = (tier["tier"]["size"], *(tier.get(f) for f in _CLASSES))
        out[mid] = (
            cost["input"],
            cost["output"],
            cost.get("cache_read"),
            cost.get("cache_write"),
            tier_t,
            bool(value.get("exactOnly")),
        )
        claims[_norm(mid)] = (claim, mid)
    return out


_CLASSES = ("input", "output", "cache_read", "cache_write")


def _norm(model_id: str) -> str:
    return model_id.lower().replace(".", "-").replace("@", "-")


def render(table: dict[str, tuple[Any, ...]]) -> str:
    """The data file's text: one entry per line, ids sorted, stable across runs."""
    lines = [f"  {json.dumps(k)}: {json.dumps(list(v))}" for k, v in sorted(table.items())]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the data file; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=DEFAULT_BINARY, help="ccusage binary")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="data file to write")
    args = parser.parse_args(argv)
    if not args.binary.is_file():
        print(f"build_models_dev: no ccusage binary at {args.binary}", file=sys.stderr)
        return 1
    table = models_dev_gemini(ccusage_snapshots(args.binary))
    if not table:
        print(f"build_models_dev: no models.dev snapshot in {args.binary}", file=sys.stderr)
        return 1
    args.output.write_text(render(table), encoding="utf-8")
    print(f"wrote {len(table)} models to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
