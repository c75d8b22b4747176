"""Where verdicts and dead letters go. A write returns only once the records are durable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from azure.core.exceptions import AzureError

from graphtap.processing.deadletters import DeadLetter
from graphtap.processing.verdicts import Verdict

T = TypeVar("T")


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


class AsyncVerdictSink(Protocol):
    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Durably accept verdicts; return how many were new (by key) to this sink."""
        ...

    async def close(self) -> None: ...


class AsyncDeadLetterStore(Protocol):
    async def write_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Durably store dead letters not stored before (by key); return how many were new."""
        ...

    async def close(self) -> None: ...


async def gather_all(writes: Iterable[Awaitable[T]]) -> list[T]:
    """Await every write even when one fails, so none is abandoned mid-flight; then raise the
    first failure, or return the outcomes in order."""
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


async def gather_storage(
    calls: Sequence[Awaitable[T]],
    *,
    unavailable: type[Exception],
    describe: Callable[[int, int], str],
) -> list[T]:
    """`gather_all` for Storage calls: every call is awaited; if any failed with an Azure
    error, `unavailable` is raised with `describe(failed, total)` and the first error's type
    and first line (never a body); any other failure is raised as it is."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        first = failures[0]
        if not isinstance(first, AzureError):
            raise first
        lines = str(first.message or first).strip().splitlines()
        detail = f"{type(first).__name__}: {lines[0] if lines else 'no message'}"
        raise unavailable(f"{describe(len(failures), len(outcomes))}: {detail}") from first
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
