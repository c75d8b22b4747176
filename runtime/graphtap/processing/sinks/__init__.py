"""Where verdicts and dead letters go. A write returns only once the records are durable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.verdicts import Verdict


class VerdictSink(Protocol):
    def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Durably store verdicts not stored before (by key); return how many were new."""
        ...

    def close(self) -> None: ...


class DeadLetterStore(Protocol):
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Durably store dead letters not stored before (by key); return how many were new."""
        ...

    def close(self) -> None: ...
