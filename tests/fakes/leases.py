"""Blob Storage's lease on one blob, on a simulated clock: for runs of days in seconds.

Azurite serves the same lease (tests/subscriptions/test_leadership.py runs one contract
against both), but on the wall clock: a week of renewals cannot wait for it. The rules kept
are the service's documented ones: acquiring a blob whose lease is live is 409
LeaseAlreadyPresent; renewing or releasing with another lease id is 409
LeaseIdMismatchWithLeaseOperation; an expired lease may be renewed by its holder until
someone else acquires it; the service times a lease from when it receives the call.

`history` is the ground truth a test checks writes against: every term, with its holder
and when it began and ended (a live lease's end is when it will expire if not renewed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.leadership import MAX_LEASE, MIN_LEASE, LeaseTaken


@dataclass
class Term:
    holder: str
    lease_id: str
    start: float
    end: float


@dataclass
class SimulatedLeases:
    clock: Clock
    history: list[Term] = field(default_factory=list)

    @property
    def current(self) -> Term | None:
        return self.history[-1] if self.history else None

    def holder_at(self, moment: float) -> str | None:
        """Who held the lease at a monotonic moment (terms never overlap)."""
        for term in self.history:
            if term.start <= moment < term.end:
                return term.holder
        return None

    def client(self, holder: str) -> LeaseClient:
        return LeaseClient(self, holder)

    def acquire(self, holder: str, seconds: int) -> str:
        if not MIN_LEASE <= seconds <= MAX_LEASE:
            raise ValueError(f"InvalidHeaderValue: lease duration {seconds}")
        now = self.clock.monotonic()
        current = self.current
        if current is not None and now < current.end:
            raise LeaseTaken("LeaseAlreadyPresent")
        term = Term(holder, str(uuid.uuid4()), now, now + seconds)
        self.history.append(term)
        return term.lease_id

    def renew(self, lease_id: str, seconds: int) -> None:
        current = self.current
        if current is None or current.lease_id != lease_id:
            raise LeaseTaken("LeaseIdMismatchWithLeaseOperation")
        now = self.clock.monotonic()
        if now >= current.end:  # expired, and nobody took it: the holder gets it back
            self.history.append(Term(current.holder, lease_id, now, now + seconds))
        else:
            current.end = now + seconds

    def release(self, lease_id: str) -> None:
        current = self.current
        if current is None or current.lease_id != lease_id:
            raise LeaseTaken("LeaseIdMismatchWithLeaseOperation")
        current.end = min(current.end, self.clock.monotonic())


class LeaseClient:
    """One instance's calls to the lease (`graphtap.subscriptions.leadership.Lease`).

    `down` makes every call fail as an unreachable service would (a killed host's last
    release never arrives)."""

    def __init__(self, service: SimulatedLeases, holder: str) -> None:
        self.service = service
        self.holder = holder
        self.down = False
        self._seconds = MIN_LEASE

    def _reach(self) -> None:
        if self.down:
            raise ConnectionError(f"{self.holder}: the lease service is unreachable")

    async def acquire(self, seconds: int) -> str:
        self._reach()
        self._seconds = seconds
        return self.service.acquire(self.holder, seconds)

    async def renew(self, lease_id: str) -> None:
        self._reach()
        self.service.renew(lease_id, self._seconds)

    async def release(self, lease_id: str) -> None:
        self._reach()
        self.service.release(lease_id)

    async def close(self) -> None:
        return None
