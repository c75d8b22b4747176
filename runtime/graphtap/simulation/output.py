"""Where simulated events go: a JSONL file of bodies, or the local hub."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from graphtap.localhub import LocalHub
from graphtap.simulation.emitter import SimulatedEvent

SEND_BATCH = 500


def write_events(
    events: Iterable[SimulatedEvent],
    *,
    out_file: Path | None = None,
    hub: LocalHub | None = None,
    on_event: Callable[[SimulatedEvent], None] | None = None,
    payload_store: Path | None = None,
) -> Counter[str]:
    """Write each body to exactly one of `out_file` or `hub`, and each payload over 1 MB to
    `payload_store` (a folder standing for Graph's container, a file per
    `additionalPayloadStorageId`); return what was written."""
    if (out_file is None) == (hub is None):
        raise ValueError("write to exactly one of a JSONL file or a local hub")
    if payload_store is not None and not payload_store.is_dir():
        raise ValueError(f"payload store {payload_store} is not a folder")
    totals: Counter[str] = Counter()
    pending: list[bytes] = []
    sink = out_file.open("wb") if out_file is not None else None
    try:
        for event in events:
            totals.update(
                events=1,
                changes=event.changes,
                validation=event.validation,
                lifecycle=event.lifecycle,
                faults=len(event.faults),
                large=len(event.payloads),
            )
            for storage_id, blob in event.payloads:
                if payload_store is None:
                    raise ValueError("a payload over 1 MB needs a payload store to go to")
                (payload_store / storage_id).write_bytes(blob)
            if sink is not None:
                sink.write(event.body + b"\n")
            else:
                pending.append(event.body)
                if len(pending) >= SEND_BATCH:
                    _send(hub, pending)
                    pending = []
            if on_event is not None:
                on_event(event)
        if pending:
            _send(hub, pending)
    finally:
        if sink is not None:
            sink.close()
    return totals


def _send(hub: LocalHub | None, bodies: list[bytes]) -> None:
    assert hub is not None
    hub.send(bodies)
