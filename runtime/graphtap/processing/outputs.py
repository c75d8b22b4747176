"""What a batch of events produced, gathered for the stores that make it durable.

Every host commits a batch the same way and in the same order: verdicts, dead letters,
lifecycle events, and only then the checkpoint. The synchronous runner and the Event Hubs
source share this gathering step and `Summary.record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.lifecycle import LifecycleEvent
from graphtap.processing.pipeline import EventResult
from graphtap.processing.verdicts import Verdict


@dataclass(frozen=True, slots=True)
class BatchOutputs:
    verdicts: list[Verdict]
    dead_letters: list[DeadLetter]
    lifecycle: list[LifecycleEvent]

    @classmethod
    def of(cls, results: Sequence[EventResult]) -> BatchOutputs:
        return cls(
            [v for r in results for v in r.verdicts],
            [d for r in results for d in r.dead_letters],
            [e for r in results for e in r.lifecycle],
        )
