"""Endpoints as the CLI and hosts name them: `local:DIR`, `jsonl:FILE`, `sqlite:FILE`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from graphtap.processing.sinks import DeadLetterStore, VerdictSink
from graphtap.processing.sinks.jsonl import JsonlDeadLetters, JsonlVerdictSink
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import EventSource
from graphtap.processing.sources.jsonl import JsonlSource
from graphtap.processing.sources.localhub import LocalHubSource


class EndpointError(ValueError):
    """An endpoint string that does not name a supported scheme and location."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    path: Path

    @classmethod
    def parse(cls, text: str, *, allowed: tuple[str, ...], what: str) -> Endpoint:
        scheme, sep, location = text.partition(":")
        if not sep or scheme not in allowed or not location:
            raise EndpointError(
                f"{what} {text!r} is not one of: {', '.join(f'{s}:PATH' for s in allowed)}"
            )
        return cls(scheme, Path(location))

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}"


SOURCE_SCHEMES = ("local", "jsonl")
SINK_SCHEMES = ("sqlite", "jsonl")


def open_source(endpoint: Endpoint, *, consumer_group: str, follow: bool = False) -> EventSource:
    if endpoint.scheme == "local":
        return LocalHubSource(endpoint.path, consumer_group=consumer_group, follow=follow)
    return JsonlSource(endpoint.path)


@dataclass
class Stores:
    """The sink and the dead-letter store; one object when they share a SQLite file."""

    sink: VerdictSink
    dead_letters: DeadLetterStore

    def close(self) -> None:
        self.sink.close()
        if self.dead_letters is not cast(object, self.sink):
            self.dead_letters.close()


def open_stores(sink: Endpoint, dead_letters: Endpoint | None) -> Stores:
    """Dead letters default to the sink's own store (a table, or a sibling JSONL file)."""
    if dead_letters is None:
        dead_letters = sink if sink.scheme == "sqlite" else default_dead_letters(sink)
    verdict_sink: VerdictSink
    if sink.scheme == "sqlite":
        store = SqliteStore(sink.path)
        verdict_sink = store
        if dead_letters == sink:
            return Stores(store, store)
    else:
        verdict_sink = JsonlVerdictSink(sink.path)
    try:
        letters: DeadLetterStore = (
            SqliteStore(dead_letters.path)
            if dead_letters.scheme == "sqlite"
            else JsonlDeadLetters(dead_letters.path)
        )
    except BaseException:
        verdict_sink.close()  # the dead letters' store refused to open: leave nothing open
        raise
    return Stores(verdict_sink, letters)


def default_dead_letters(sink: Endpoint) -> Endpoint:
    return Endpoint("jsonl", sink.path.with_name(sink.path.stem + ".dead-letters.jsonl"))


def default_lifecycle_queue(sink: Endpoint) -> Path:
    """The lifecycle queue lives beside the sink (in the same file when it is SQLite)."""
    if sink.scheme == "sqlite":
        return sink.path
    return sink.path.with_name(sink.path.stem + ".lifecycle.sqlite")
