"""What a finding may say about a value: never the value itself.

A DLP feed must not become a second copy of the data it protects. A finding carries the type,
confidence, count, positions, a masked preview (at most the last four characters) and an
HMAC-SHA256 of the normalised value under a per-environment key, so repeats of one leaked
value can be correlated across messages without storing it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

MASK = "****"


@dataclass(slots=True)
class Finding:
    """Not frozen: a frozen dataclass's constructor costs four times more, and one is built
    for every finding; nothing changes a finding once reported."""

    type: str
    confidence: int
    count: int
    preview: str
    positions: tuple[int, ...]  # offsets of each occurrence in the extracted text
    value_hash: str  # hex HMAC-SHA256 of the normalised value

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "confidence": self.confidence,
            "count": self.count,
            "preview": self.preview,
            "positions": list(self.positions),
            "value_hash": self.value_hash,
        }


def preview(normalised: str, reveal: int = 4) -> str:
    """A fixed mask and at most `reveal` (<= 4) trailing characters; shorter values reveal
    less, so a short password never shows half of itself."""
    length = len(normalised)
    shown = min(reveal, 4) if length >= 12 else min(reveal, 2) if length >= 8 else 0
    return MASK + normalised[length - shown :] if shown else MASK


class ValueHasher:
    """HMAC-SHA256 under one key; the keyed state is built once and copied per value."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or not key:
            raise ValueError("the finding hash key must be non-empty bytes")
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, normalised: str) -> str:
        mac = self._keyed.copy()
        mac.update(normalised.encode("utf-8"))
        return mac.hexdigest()
