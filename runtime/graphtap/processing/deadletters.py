"""Dead letters: what could not become a verdict, with the reason why and the event it came in.

An event's body is kept once, as a `DeadEvent`, however many of its items fail; each
`DeadLetter` names one reason, the items it covers (their positions in the collection's
`value` array, as ranges) and the event by the SHA-256 of its body. A body of a 1 MB event
made of 300,000 bad items is therefore stored once, beside one letter per reason.

Nothing is lost: once the cause is fixed (a missing key loaded, say) the kept body can be
replayed (`ClientStateMask.restore` puts the clientState back), and the idempotent sink
absorbs the items that had already produced verdicts. Payloads that came beside the body
rather than from a store (gap resync's large items) are kept with it. A body over the event
size limit cannot be Graph's and is kept as a bounded prefix with its size and hash; the
whole body stays readable from the hub within its retention.

The clientState is a secret and never rests in a store: every `clientState` in a kept body
is replaced by a marker holding a keyed hash of the value, from which `restore` finds the
accepted value again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.model import DEFAULT_MAX_EVENT_BYTES

#: How much of an oversized body is kept (its size and SHA-256 are kept too).
OVERSIZED_PREFIX_BYTES = 16 * 1024
#: Distinct messages one letter spells out; the rest are counted.
MAX_MESSAGES = 8
#: Longest message kept for one reason of one event.
MAX_MESSAGE_CHARS = 4096
#: What a masked clientState starts with; `accepted` or `rejected` and the keyed hash follow.
CLIENT_STATE_MARKER = "graphtap-masked-client-state:"

_MARKER_CONTEXT = b"graphtap dead-letter clientState"
_CLIENT_STATE_FIELD = re.compile(rb'"clientState"\s*:\s*"((?:[^"\\]|\\.)*)("?)', re.DOTALL)
_MARKER = re.compile(re.escape(CLIENT_STATE_MARKER) + r"(?:accepted|rejected):[0-9a-f]{32}")


class ClientStateMask:
    """Replaces every clientState in a body by a marker: `accepted` or `rejected` and an
    HMAC-SHA256 of the value under a key derived from the environment's hash key."""

    def __init__(self, accepted: Iterable[str], key: bytes) -> None:
        self._key = hmac.new(key, _MARKER_CONTEXT, hashlib.sha256).digest()
        self._accepted = tuple(value for value in accepted if value)
        self._markers: dict[str, str] = {}  # an event of many alike items hashes once

    def marker(self, value: str) -> str:
        known = self._markers.get(value)
        if known is not None:
            return known
        if len(self._markers) >= 1024:
            self._markers.clear()
        self._markers[value] = made = self._marker(value)
        return made

    def _marker(self, value: str) -> str:
        encoded = value.encode("utf-8", "surrogatepass")
        matched = False
        for accepted in self._accepted:
            matched |= hmac.compare_digest(encoded, accepted.encode("utf-8", "surrogatepass"))
        digest = hmac.new(self._key, encoded, hashlib.sha256).hexdigest()[:32]
        return f"{CLIENT_STATE_MARKER}{'accepted' if matched else 'rejected'}:{digest}"

    def mask(self, body: bytes, *, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> tuple[str, bool]:
        """The body as it may be stored, and whether it was cut to a prefix."""
        if len(body) > max_bytes:
            return self._mask_text(body[:OVERSIZED_PREFIX_BYTES]), True
        if b"clientState" not in body and b"\\u" not in body and not self._has_accepted(body):
            try:  # no clientState, even escaped: nothing to mask, nothing to parse
                return body.decode(), False
            except UnicodeDecodeError:
                return self._mask_text(body), False
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._mask_text(body), False
        # Each clientState value replaced where it stands, every other byte kept as it came;
        # a body where that does not mask everything (an escaped name, a value that is not a
        # string) is kept as its parsed document, re-serialized, instead.
        in_place = self._mask_accepted(_CLIENT_STATE_FIELD.sub(self._field, body))
        if self._fully_masked(in_place):
            return in_place.decode(), False
        items = document.get("value") if isinstance(document, dict) else None
        masked = False
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and "clientState" in item:
                value = item["clientState"]
                if value is not None:
                    text = value if isinstance(value, str) else orjson.dumps(value).decode()
                    item["clientState"] = self.marker(text)
                    masked = True
        try:
            canonical = orjson.dumps(document)
        except orjson.JSONEncodeError:  # a value orjson reads but does not write back
            return self._mask_text(body), False
        kept = self._mask_accepted(canonical)
        if not masked and kept == canonical and not self._has_accepted(body):
            return body.decode(), False  # nothing secret in it: kept byte for byte
        return kept.decode(), False

    def _fully_masked(self, text: bytes) -> bool:
        """Every item's clientState is a marker and no accepted value is left anywhere."""
        try:
            document = orjson.loads(text)
            canonical = orjson.dumps(document)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            return False
        items = document.get("value") if isinstance(document, dict) else None
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("clientState") is not None:
                value = item["clientState"]
                if not (isinstance(value, str) and _MARKER.fullmatch(value)):
                    return False
        return not self._has_accepted(canonical)

    def _field(self, match: re.Match[bytes]) -> bytes:
        """A `"clientState": "..."` found in the text, its value replaced by the marker; a
        value cut off by the end of a prefix is dropped."""
        head = match.group(0)[: match.start(1) - match.start(0)]
        if not match.group(2):
            return head
        raw = match.group(1)
        try:
            value = orjson.loads(b'"' + raw + b'"')
        except orjson.JSONDecodeError:
            value = raw.decode("utf-8", "backslashreplace")
        return head + self.marker(str(value)).encode() + b'"'

    def mask_message(self, message: str) -> str:
        """A dead letter's message with any accepted value in it masked (a message may quote
        a field an attacker filled with the secret)."""
        if not any(value in message for value in self._accepted):
            return message
        return self._mask_accepted(message.encode("utf-8", "surrogatepass")).decode(
            "utf-8", "backslashreplace"
        )

    def restore(self, kept: str, candidates: Iterable[str]) -> bytes:
        """A kept body with each marker that one of `candidates` hashes to put back."""
        values = {self.marker(value): value for value in candidates}

        def original(match: re.Match[str]) -> str:
            marker = match.group(0)
            value = values.get(marker.replace(":rejected:", ":accepted:")) or values.get(
                marker.replace(":accepted:", ":rejected:")
            )
            return marker if value is None else orjson.dumps(value).decode()[1:-1]

        return _MARKER.sub(original, kept).encode()

    def _mask_text(self, body: bytes) -> str:
        """A body that is not JSON (or only its prefix): clientState fields found by their
        text, a value cut by the prefix dropped, and any accepted value masked wherever."""

        masked = self._mask_accepted(_CLIENT_STATE_FIELD.sub(self._field, body))
        return masked.decode("utf-8", errors="backslashreplace")

    def _has_accepted(self, text: bytes) -> bool:
        return self._mask_accepted(text) != text

    def _mask_accepted(self, text: bytes) -> bytes:
        for value in self._accepted:
            marker = self.marker(value).encode()
            for form in {value.encode("utf-8", "surrogatepass"), orjson.dumps(value)[1:-1]}:
                text = text.replace(form, marker)
        return text


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """An event's body as kept for its dead letters: stored once, referred to by `key`."""

    key: str  # SHA-256 (hex) of the body as it was received
    size: int  # bytes of the body as it was received
    body: str  # clientStates masked; only the first OVERSIZED_PREFIX_BYTES when truncated
    truncated: bool
    partition: str
    offset: int
    #: By item index, the payloads handed over beside the body (gap resync's large items),
    #: which no payload store holds: kept so the body can be replayed whole.
    payloads: dict[int, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_key": self.key,
            "size": self.size,
            "sha256": self.key,
            "truncated": self.truncated,
            "source": {"partition": self.partition, "offset": self.offset},
            "body": self.body,
        }
        if self.payloads:
            record["payloads"] = {str(index): p for index, p in self.payloads.items()}
        return record


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The items of one event that failed for one reason (or the whole event)."""

    key: str  # "<event key>:<reason>": a replayed event adds nothing
    reason: Reason
    message: str
    items: str | None  # positions in `value`, as ranges ("0-3,7"); None: the whole event
    item_count: int  # the items covered (1 for a whole event)
    event: DeadEvent
    occurred_at: float

    @property
    def partition(self) -> str:
        return self.event.partition

    @property
    def offset(self) -> int:
        return self.event.offset

    @property
    def item_indexes(self) -> list[int] | None:
        return None if self.items is None else expand_ranges(self.items)

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
        mask: ClientStateMask | None = None,
    ) -> DeadLetter:
        """One failure's letter (the pipeline groups an event's failures with `for_event`)."""
        failures = Failures()
        failures.add_error(error, item_index)
        [letter] = for_event(
            body,
            failures,
            partition=partition,
            offset=offset,
            occurred_at=occurred_at,
            mask=mask,
        )
        return letter

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_key": self.key,
            "reason": str(self.reason),
            "message": self.message,
            "items": self.items,
            "item_count": self.item_count,
            "event_key": self.event.key,
            "source": {"partition": self.partition, "offset": self.offset},
            "occurred_at": self.occurred_at,
        }


class Failures:
    """An event's failures as they happen: for each reason and message, the items (their
    positions in `value`; -1 for the whole event) as ranges, so a run of alike items costs
    one range, not one entry per item."""

    __slots__ = ("groups",)

    def __init__(self) -> None:
        self.groups: dict[tuple[Reason, str], list[list[int]]] = {}

    def add(self, reason: Reason, message: str, index: int | None) -> None:
        position = -1 if index is None else index
        ranges = self.groups.get((reason, message))
        if ranges is None:
            self.groups[(reason, message)] = [[position, position]]
        elif ranges[-1][1] == position - 1 and position >= 0:
            ranges[-1][1] = position
        else:
            ranges.append([position, position])

    def add_error(self, error: NotificationError, index: int | None) -> None:
        self.add(error.reason, error.message, index)


def for_event(
    body: bytes,
    failures: Failures,
    *,
    partition: str,
    offset: int,
    occurred_at: float,
    mask: ClientStateMask | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    payloads: dict[int, dict[str, Any]] | None = None,
) -> list[DeadLetter]:
    """One letter per reason for an event's failures, all referring to one `DeadEvent`.
    `payloads`: what was handed over beside the body, kept with it (see `DeadEvent`)."""
    mask = mask or ClientStateMask((), b"")
    kept, truncated = mask.mask(body, max_bytes=max_bytes)
    event = DeadEvent(
        hashlib.sha256(body).hexdigest(),
        len(body),
        kept,
        truncated,
        partition,
        offset,
        None if truncated else payloads or None,
    )
    by_reason: dict[Reason, dict[str, list[list[int]]]] = {}
    for (reason, message), ranges in failures.groups.items():
        by_reason.setdefault(reason, {})[message] = ranges
    letters = []
    for reason, messages in by_reason.items():
        merged = _merge([r for ranges in messages.values() for r in ranges if r[0] >= 0])
        whole = not merged
        letters.append(
            DeadLetter(
                key=f"{event.key}:{reason}",
                reason=reason,
                message=mask.mask_message(_message(messages, whole)),
                items=None if whole else _ranges_text(merged),
                item_count=1 if whole else sum(last - first + 1 for first, last in merged),
                event=event,
                occurred_at=occurred_at,
            )
        )
    return letters


def _merge(ranges: list[list[int]]) -> list[tuple[int, int]]:
    """Sorted ranges, overlapping and adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _message(messages: dict[str, list[list[int]]], whole: bool) -> str:
    """The distinct messages of one reason, each with the items it concerns, bounded."""
    if whole or len(messages) == 1:
        [text] = list(messages)[:1]
        return text[:MAX_MESSAGE_CHARS]
    parts = []
    for text, ranges in list(messages.items())[:MAX_MESSAGES]:
        positions = _ranges_text(_merge([r for r in ranges if r[0] >= 0]))
        parts.append(f"value[{positions[:200]}]: {text}")
    rest = len(messages) - MAX_MESSAGES
    if rest > 0:
        parts.append(f"and {rest} more distinct message(s)")
    return "; ".join(parts)[:MAX_MESSAGE_CHARS]


_CLIENT_STATE_TEXT = re.compile(r'"clientState"\s*:\s*"(?:[^"\\]|\\.)*"?', re.DOTALL)


def remove_client_states(body: str | None) -> str:
    """A body stored by an earlier release, every clientState value replaced by a marker
    that says it was removed (those bodies were kept before values were masked)."""
    return _CLIENT_STATE_TEXT.sub(f'"clientState":"{CLIENT_STATE_MARKER}removed"', body or "")


def compress_ranges(indexes: Sequence[int]) -> str:
    """Positions as "0-3,7,9-12"."""
    return _ranges_text(_merge([[i, i] for i in indexes]))


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """ "0-3,7" as [(0, 3), (7, 7)]; ValueError for anything else."""
    if _RANGES.fullmatch(text) is None:
        raise ValueError(f"item positions {text[:80]!r} are not ranges like 0-3,7")
    ranges = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last or first)))
    return ranges


def expand_ranges(text: str) -> list[int]:
    return [index for first, last in parse_ranges(text) for index in range(first, last + 1)]


def ranges_overlap(one: str, other: str) -> bool:
    """Whether two letters' item positions share one, without spelling them out."""
    theirs = parse_ranges(other)
    return any(a <= d and c <= b for a, b in parse_ranges(one) for c, d in theirs)


_RANGES = re.compile(r"[0-9]{1,9}(?:-[0-9]{1,9})?(?:,[0-9]{1,9}(?:-[0-9]{1,9})?)*")
