"""Comparing event keys across ledgers built under different HOMEs."""

from __future__ import annotations

import hashlib


def portable_key(key: str, path: str, rel: str) -> str:
    """A Claude line without ``message.id`` is keyed
    ``@<hash of its absolute path>:<offset>:<hash of the line>``; two trees under different
    HOMEs can only be compared with the path made relative (``rel``)."""
    if not key.startswith("@"):
        return key
    digest, offset, line_digest = key[1:].split(":")
    assert digest == hashlib.blake2b(path.encode(), digest_size=8).hexdigest(), key
    return f"@{rel}:{offset}:{line_digest}"
