"""What a run did: the counts the CLI prints, the status page shows and the metrics export.

`BatchCommitter.commit` records each batch here once it is durable, and nothing else does.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from graphtap.processing.pipeline import EventResult


@dataclass
class Summary:
    """What a run did, for the CLI's summary, the status page and the benchmarks."""

    events: int = 0
    notifications: int = 0
    validation_skipped: int = 0
    lifecycle_queued: int = 0
    verdicts: int = 0
    duplicate_verdicts: int = 0
    findings_by_type: Counter[str] = field(default_factory=Counter)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    certificates_used: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def dead_letters(self) -> int:
        return sum(self.dead_letters_by_reason.values())

    @property
    def notifications_per_second(self) -> float:
        return self.notifications / self.seconds if self.seconds else 0.0

    def record(self, results: Sequence[EventResult], *, events: int, new_verdicts: int) -> None:
        """Count a committed batch: `new_verdicts` of its verdicts were not in the sink before."""
        verdicts = [v for r in results for v in r.verdicts]
        self.events += events
        self.verdicts += new_verdicts
        self.duplicate_verdicts += len(verdicts) - new_verdicts
        now = time.time()
        for result in results:
            self.notifications += result.notifications
            self.validation_skipped += result.validation_skipped
            self.lifecycle_queued += len(result.lifecycle)
            for letter in result.dead_letters:  # items, however an event's are grouped
                self.dead_letters_by_reason[str(letter.reason)] += letter.item_count
        for verdict in verdicts:
            if verdict.certificate_id is not None:
                self.certificates_used[verdict.certificate_id] = now
            for finding in verdict.findings:
                self.findings_by_type[str(finding["type"])] += int(finding["count"])

    def observations(self) -> Iterator[tuple[str, float, Mapping[str, str]]]:
        """The running totals as (metric, value, attributes), for `telemetry.observe_metrics`."""
        yield "events", self.events, {}
        yield "notifications", self.notifications, {}
        yield "verdicts", self.verdicts, {}
        for kind, count in self.findings_by_type.items():
            yield "findings", count, {"type": kind}
        for reason, count in self.dead_letters_by_reason.items():
            yield "dead_letters", count, {"reason": reason}

    def to_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "notifications": self.notifications,
            "validation_skipped": self.validation_skipped,
            "lifecycle_queued": self.lifecycle_queued,
            "verdicts": self.verdicts,
            "duplicate_verdicts": self.duplicate_verdicts,
            "findings_by_type": dict(sorted(self.findings_by_type.items())),
            "dead_letters_by_reason": dict(sorted(self.dead_letters_by_reason.items())),
            "seconds": round(self.seconds, 3),
            "notifications_per_second": round(self.notifications_per_second, 1),
        }
