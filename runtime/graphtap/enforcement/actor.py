"""The actor: drains the action outbox and applies each action in Teams, once.

Apart from the notifications' path by design: the commit step only writes the outbox, so
Graph being slow, throttling or down leaves actions pending and never holds a checkpoint.
Each action is checked against the message before it is applied (a GET, then the PATCH), so
an action applied already, a message deleted since, or a sender's override since are
recorded as such instead of patched. Calls go through a `WriteThrottle`: paced, and retried
on 429/503 after their Retry-After and on other 5xx with backoff; an action still failing
after that stays pending for the next drain.

Where several instances hold the same action (each wrote it in its own commit), a shared
ledger (`sinks.ledger`, the verdict ledger's container, under `action-<verdict key>`) lets one
of them apply it: the others leave it pending while it is claimed, and record it as
`already_applied` once the claimant settled it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from graphtap.enforcement.messages import TeamsMessages
from graphtap.processing.actions import Violation
from graphtap.processing.outbox import (
    ALREADY_APPLIED,
    APPLIED,
    FAILED,
    FORBIDDEN,
    GONE,
    OVERRIDDEN,
    ActionOutbox,
    OutboxRecord,
)
from graphtap.processing.sinks.ledger import BlobVerdictLedger, Claim, LedgerUnavailable
from graphtap.subscriptions.clock import Clock
from graphtap.subscriptions.graph import GraphError
from graphtap.subscriptions.throttle import RetryableError, ThrottleSettings, WriteThrottle

log = logging.getLogger(__name__)

#: Message PATCHes share the app's Graph write budget with subscription writes: a slower
#: pace than the control plane's keeps both under it.
ACTION_WRITES = ThrottleSettings(rate=5.0, burst=10, concurrency=4, what="policy violation writes")

PERMISSION_HINT = (
    "the runtime identity lacks Chat.UpdatePolicyViolation.All (chats) or "
    'ChannelMessage.UpdatePolicyViolation.All (channels): set [enforcement] mode = "enforce" '
    "in the environment's policy.toml and deploy the stack, which grants both"
)
LICENCE_HINT = (
    "Graph requires a licence that includes the Microsoft Communications DLP service plan "
    "(Microsoft 365 E5 or E5 Compliance) to set policyViolation: license the senders (or "
    'tenant), or set [enforcement] mode = "dry_run" until it is'
)
PROTECTED_HINT = (
    "the app needs Microsoft's approval for protected Teams APIs: request it at "
    "https://aka.ms/teamsgraph/requestaccess"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict_key: str
    status: str  # an outbox outcome, or "pending" when it will be tried again
    detail: str | None = None


class Enforcer:
    def __init__(
        self,
        outbox: ActionOutbox,
        messages: TeamsMessages,
        clock: Clock,
        throttle: WriteThrottle | None = None,
        claims: BlobVerdictLedger | None = None,
    ) -> None:
        self._outbox = outbox
        self._messages = messages
        self._clock = clock
        self._throttle = throttle or WriteThrottle(clock, ACTION_WRITES)
        self._claims = claims
        #: Why the last action left pending failed, for an operator's report.
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event, *, interval: float = 1.0) -> None:
        """Drain until `stop` is set, pausing `interval` seconds once nothing is pending:
        a host runs this beside its processor, as it runs the control plane."""
        while not stop.is_set():
            outcomes = await self.drain()
            if not outcomes or set(outcomes) == {"pending"}:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    async def close(self) -> None:
        if self._claims is not None:
            await self._claims.close()

    async def drain(self, limit: int = 100) -> Counter[str]:
        """Apply up to `limit` pending actions, oldest first; outcomes by status."""
        outcomes: Counter[str] = Counter()
        for record in self._outbox.pending(limit):
            outcome = await self.apply(record)
            outcomes[outcome.status] += 1
        return outcomes

    async def apply(self, record: OutboxRecord) -> Outcome:
        """Apply one action and record its outcome in the outbox."""
        now = self._clock.time()
        claims: list[Claim] = []
        try:
            if self._claims is not None:
                claims, held = await self._claims.claim([f"action-{record.verdict_key}"])
                if held:  # another instance is applying it right now
                    return Outcome(record.verdict_key, "pending", "claimed by another instance")
                if not claims:  # another instance settled it
                    self._outbox.settle(record.verdict_key, ALREADY_APPLIED, None, now)
                    return Outcome(record.verdict_key, ALREADY_APPLIED)
            status = await self._apply(record)
            detail = None
        except (RetryableError, AzureError, LedgerUnavailable, OSError) as error:
            # Still throttled after every retry, a token or the claims' storage failing for
            # now: the action stays pending for the next drain, the actor goes on.
            self._outbox.retry_later(record.verdict_key, str(error)[:500], now)
            self.last_error = f"{type(error).__name__}: {str(error)[:500]}"
            log.warning(
                "action left pending",
                extra={"verdict_key": record.verdict_key, "error": type(error).__name__},
            )
            return Outcome(record.verdict_key, "pending", str(error))
        except GraphError as error:
            status, detail = _refusal(error)
        self._outbox.settle(record.verdict_key, status, detail, now)
        if self._claims is not None and claims and status in _DONE:
            # Settled for every instance. A refusal is not: its claim lapses, and another
            # instance meets the refusal itself (its own grants, its own record of it).
            try:
                await self._claims.settle(claims)
            except LedgerUnavailable as error:
                log.warning(
                    "action claim not settled; others find the message as it is now once "
                    "the claim lapses",
                    extra={"verdict_key": record.verdict_key, "error": str(error)[:300]},
                )
        log.info(
            "action settled",
            extra={"verdict_key": record.verdict_key, "action": record.action, "state": status},
        )
        return Outcome(record.verdict_key, status, detail)

    async def _apply(self, record: OutboxRecord) -> str:
        target = record.target
        current = await self._throttle.run(lambda: self._messages.violation(target), write=False)
        state = _compare(Violation.of(current), record)
        if state is not None:
            return state

        async def patch() -> None:
            await self._messages.set_violation(target, record.violation)

        await self._throttle.run(patch)
        return APPLIED


#: Outcomes after which no instance has anything left to do for the action.
_DONE = frozenset({APPLIED, ALREADY_APPLIED, OVERRIDDEN, GONE})


def _compare(current: Violation | None, record: OutboxRecord) -> str | None:
    """What the message already says about this action: None when it must be applied."""
    wanted = Violation.of(record.violation)
    assert wanted is not None
    if record.action == "lift":
        return ALREADY_APPLIED if current is None or not current.restricts else None
    if current is None:
        return None
    if current.tip == wanted.tip and current.user_action == "override":
        return OVERRIDDEN  # the sender answered before the action was applied
    if (
        current.dlp_action == wanted.dlp_action
        and current.tip == wanted.tip
        and current.matched == wanted.matched
    ):
        return ALREADY_APPLIED
    return None


def _refusal(error: GraphError) -> tuple[str, str]:
    """An outcome and what to do about it, for a call Graph refused."""
    text = error.message.lower()
    if error.status == 404:
        return GONE, "the message no longer exists"
    if error.status == 402 or "license" in text or "licence" in text:
        return FORBIDDEN, f"{LICENCE_HINT} (Graph: {error.status} {error.message[:200]})"
    if error.status == 403 and "protected api" in text:
        return FORBIDDEN, f"{PROTECTED_HINT} (Graph: 403 {error.message[:200]})"
    if error.status in (401, 403):
        return FORBIDDEN, f"{PERMISSION_HINT} (Graph: {error.status} {error.message[:200]})"
    return FAILED, f"Graph: {error.status} {error.code or ''} {error.message[:300]}".strip()
