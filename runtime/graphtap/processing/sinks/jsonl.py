"""JSONL files: one verdict (or dead letter) per line, for pipelines that tail files.

Appends are deduplicated by key (the keys already in the file are read at open) and
fsynced per batch. A crash can leave a torn last line; it is cut off at open, and its
record comes back with the replayed batch, since the checkpoint had not moved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.verdicts import Verdict


class JsonlLog:
    """An append-only JSONL file that never holds two records with the same key."""

    def __init__(self, path: Path, key_field: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._key_field = key_field
        self._keys: set[str] = set()
        if path.exists():
            self._load_keys_and_cut_torn_tail()
        self._file = path.open("ab")

    def _load_keys_and_cut_torn_tail(self) -> None:
        good_bytes = 0
        with self.path.open("rb") as existing:
            for line in existing:
                if not line.endswith(b"\n"):
                    break  # torn by a crash mid-append: its batch was never checkpointed
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(
                        f"{self.path}: line at byte {good_bytes} is not JSON; refusing to append"
                    ) from None
                self._keys.add(str(record[self._key_field]))
                good_bytes += len(line)
        if good_bytes != self.path.stat().st_size:
            os.truncate(self.path, good_bytes)

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        new: dict[str, bytes] = {}
        for record in records:
            key = str(record[self._key_field])
            if key not in self._keys and key not in new:
                new[key] = orjson.dumps(record) + b"\n"
        if new:
            self._file.write(b"".join(new.values()))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._keys.update(new)
        return len(new)

    def close(self) -> None:
        self._file.close()


class JsonlVerdictSink:
    def __init__(self, path: Path) -> None:
        self._log = JsonlLog(path, "verdict_key")

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        return self._log.append(v.to_dict() for v in verdicts)

    def close(self) -> None:
        self._log.close()


class JsonlDeadLetters:
    def __init__(self, path: Path) -> None:
        self._log = JsonlLog(path, "dead_letter_key")

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        return self._log.append(d.to_dict() for d in letters)

    def close(self) -> None:
        self._log.close()
