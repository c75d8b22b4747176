"""Dead letters: what could not become a verdict, kept whole with the reason why.

A dead letter keeps the original event body, so nothing is lost: once the cause is fixed
(a missing key loaded, say) the body can be replayed, and the idempotent sink absorbs the
items that had already produced verdicts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from graphtap.notifications.errors import NotificationError, Reason


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: str
    reason: Reason
    message: str
    event: str
    item_index: int | None
    partition: str
    offset: int
    occurred_at: float

    @classmethod
    def from_error(
        cls,
        error: NotificationError,
        *,
        body: bytes,
        item_index: int | None,
        partition: str,
        offset: int,
        occurred_at: float,
    ) -> DeadLetter:
        digest = hashlib.sha256(body).hexdigest()
        return cls(
            key=f"{digest}:{'event' if item_index is None else item_index}",
            reason=error.reason,
            message=error.message,
            event=body.decode("utf-8", errors="backslashreplace"),
            item_index=item_index,
            partition=partition,
            offset=offset,
            occurred_at=occurred_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_key": self.key,
            "reason": str(self.reason),
            "message": self.message,
            "item_index": self.item_index,
            "source": {"partition": self.partition, "offset": self.offset},
            "occurred_at": self.occurred_at,
            "event": self.event,
        }
