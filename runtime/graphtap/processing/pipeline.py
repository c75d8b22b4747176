"""The notification pipeline: one event body in, verdicts, lifecycle events and dead letters out.

Event level: parse the collection, verify validation tokens when present. Item level: the
chain of stages in `stages.py`. Nothing here touches a sink or a checkpoint: the runner
does that after the whole batch is through, so this code is free of I/O and can run in
worker processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graphtap.inspection import InspectionSettings, Inspector, Policy
from graphtap.notifications.authenticity import (
    ClientStateCheck,
    TokenPolicy,
    ValidationTokenVerifier,
)
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.keyring import KeyRing
from graphtap.notifications.model import (
    DEFAULT_MAX_EVENT_BYTES,
    ChangeNotification,
    MalformedItem,
    parse_collection,
)
from graphtap.processing.deadletters import (
    ClientStateMask,
    DeadLetter,
    Failures,
    for_event,
)
from graphtap.processing.fetched import handed_over
from graphtap.processing.lifecycle import LifecycleEvent
from graphtap.processing.records import pickled_as_fields
from graphtap.processing.sources import SourceEvent
from graphtap.processing.stages import (
    CheckClientState,
    CheckResourceBinding,
    DecryptContent,
    InspectContent,
    IssueVerdict,
    ItemContext,
    LoadLargePayload,
    OpenEnvelope,
    RequireChangeFields,
    RouteLifecycleEvents,
    SkipValidationEvents,
    Stage,
    UnwrapKey,
    UseFetchedMessage,
)
from graphtap.processing.verdicts import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineSettings:
    """Everything a worker needs to build its own pipeline (picklable, no open handles)."""

    key_paths: tuple[Path, ...]
    client_states: tuple[str, ...] = field(repr=False)  # secrets: kept out of tracebacks
    inspection: InspectionSettings
    key_password: bytes | None = field(default=None, repr=False)
    token_policy: TokenPolicy | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


@pickled_as_fields
@dataclass(slots=True)
class EventResult:
    """Everything one event produced; the runner makes it durable, then checkpoints."""

    partition: str
    offset: int
    notifications: int = 0
    validation_skipped: int = 0
    verdicts: list[Verdict] = field(default_factory=list)
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        token_verifier: ValidationTokenVerifier | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        keys: KeyRing | None = None,
        mask: ClientStateMask | None = None,
    ) -> None:
        self._stages = tuple(stages)
        self._keys = keys
        self._mask = mask or ClientStateMask((), b"")
        self._token_verifier = token_verifier
        self._max_event_bytes = max_event_bytes

    @classmethod
    def build(
        cls,
        *,
        keys: KeyRing,
        client_states: Sequence[str],
        inspector: Inspector,
        token_policy: TokenPolicy | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        dead_letter_key: bytes | None = None,
        policy: Policy | None = None,
    ) -> Pipeline:
        """The standard chain, in the order the data path prescribes.

        Dead letters keep event bodies with every clientState masked by a keyed hash, under
        `dead_letter_key` (by default the environment's finding hash key), so the accepted
        value can be put back for a replay and the secret itself is never stored. `policy`
        decides the action each verdict takes in Teams (None: report only)."""
        client_state = ClientStateCheck(client_states)
        stages: list[Stage] = [
            SkipValidationEvents(),
            RouteLifecycleEvents(client_state),
            CheckClientState(client_state),
            LoadLargePayload(),
            RequireChangeFields(),
            OpenEnvelope(keys),
            UnwrapKey(),
            DecryptContent(),
            # What the notification itself carried is bound to it first: a rich Outlook
            # notification's properties too, before the message read from Graph replaces them.
            CheckResourceBinding(),
            UseFetchedMessage(),
            InspectContent(inspector),
            IssueVerdict(policy),
        ]
        verifier = ValidationTokenVerifier(token_policy) if token_policy is not None else None
        mask = ClientStateMask(client_states, dead_letter_key or inspector.settings.hash_key)
        return cls(
            stages,
            token_verifier=verifier,
            max_event_bytes=max_event_bytes,
            keys=keys,
            mask=mask,
        )

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> Pipeline:
        return cls.build(
            keys=KeyRing.load(settings.key_paths, password=settings.key_password),
            client_states=settings.client_states,
            inspector=Inspector(settings.inspection),
            token_policy=settings.token_policy,
            max_event_bytes=settings.max_event_bytes,
            policy=settings.inspection.policy,
        )

    def process(self, event: SourceEvent) -> EventResult:
        return self.process_batch([event])[0]

    def process_batch(self, events: Sequence[SourceEvent]) -> list[EventResult]:
        """One result per event, in order.

        The stages run stage by stage over the whole batch rather than item by item: each
        item still passes the same stages in the same order, but a stage's loop (the RSA
        unwraps, the detectors) stays hot in the CPU's caches, which is measurably faster.
        """
        now = time.time()
        self._refresh_keys()
        results: list[EventResult] = []
        # Failures by result: an event's dead letters are built once the batch is through,
        # so its body is kept once however many of its items fail.
        failures: dict[int, Failures] = {}
        live: list[tuple[ItemContext, EventResult]] = []
        for event in events:
            result = EventResult(event.partition, event.offset)
            results.append(result)
            self._start(event, result, live, failures, now)
        for stage in self._stages:
            live = self._run_stage(stage, live, failures)
        if live:
            raise RuntimeError("the pipeline's last stage must issue a verdict")
        if failures:
            for event, result in zip(events, results, strict=True):
                if id(result) in failures:
                    result.dead_letters = self._dead_letters(event, failures[id(result)], now)
        return results

    def _start(
        self,
        event: SourceEvent,
        result: EventResult,
        live: list[tuple[ItemContext, EventResult]],
        failures: dict[int, Failures],
        now: float,
    ) -> None:
        """Parse an event into the items the stages will see; its collection is not kept
        beyond this call, so a flood of malformed items costs only its failure ranges."""
        try:
            collection = parse_collection(event.body, max_bytes=self._max_event_bytes)
            if collection.validation_tokens is not None:
                self._verify_tokens(collection.validation_tokens, collection.items)
        except NotificationError as error:
            self._failures(failures, result).add_error(error, None)
            return
        for notification in collection.items:
            result.notifications += 1
            if isinstance(notification, MalformedItem):
                self._failures(failures, result).add(
                    Reason.MALFORMED_NOTIFICATION, notification.problem, notification.index
                )
                continue
            ctx = ItemContext(notification, event.body, event.partition, event.offset, now)
            if event.fetched is not None:
                ctx.fetched = event.fetched.get(notification.index)
            live.append((ctx, result))

    def _run_stage(
        self,
        stage: Stage,
        live: list[tuple[ItemContext, EventResult]],
        failures: dict[int, Failures],
    ) -> list[tuple[ItemContext, EventResult]]:
        """Run one stage over the items still in flight; return those it passed on."""
        passed = []
        for item in live:
            ctx, result = item
            try:
                outcome = stage(ctx)
            except NotificationError as error:
                self._failures(failures, result).add_error(error, ctx.notification.index)
                continue
            except Exception as exc:  # noqa: BLE001 (dead-lettered and logged, never dropped)
                # Only the type: a library's message may quote the content it choked on.
                log.error(
                    "stage %s failed on partition %s offset %s item %s: %s",
                    type(stage).__name__,
                    ctx.partition,
                    ctx.offset,
                    ctx.notification.index,
                    type(exc).__name__,
                )
                failure = NotificationError(
                    Reason.PROCESSING_ERROR,
                    f"{type(stage).__name__} raised {type(exc).__name__}",
                )
                self._failures(failures, result).add_error(failure, ctx.notification.index)
                continue
            if outcome is None:
                passed.append(item)
            elif isinstance(outcome, Verdict):
                result.verdicts.append(outcome)
            elif isinstance(outcome, LifecycleEvent):
                result.lifecycle.append(outcome)
            else:
                result.validation_skipped += 1
        return passed

    @staticmethod
    def _failures(failures: dict[int, Failures], result: EventResult) -> Failures:
        found = failures.get(id(result))
        if found is None:
            failures[id(result)] = found = Failures()
        return found

    def _refresh_keys(self) -> None:
        """Pick up a rotated key without a restart (rate-limited on the ring's monotonic
        clock, not the wall clock); a failure keeps the ring."""
        if self._keys is None:
            return
        try:
            self._keys.refresh()
        except (OSError, ValueError) as exc:
            log.error("key ring not refreshed, keeping the keys loaded: %s", exc)

    def _verify_tokens(
        self, tokens: Sequence[str], items: Sequence[ChangeNotification | MalformedItem]
    ) -> None:
        if self._token_verifier is None:
            raise NotificationError(
                Reason.INVALID_VALIDATION_TOKEN,
                "event carries validationTokens but no JWKS and app ids are configured "
                "to verify them",
            )
        tenants = {
            item.tenant_id
            for item in items
            if isinstance(item, ChangeNotification) and item.encrypted_content and item.tenant_id
        }
        self._token_verifier.verify(tokens, tenants)

    def _dead_letters(self, event: SourceEvent, failures: Failures, now: float) -> list[DeadLetter]:
        return for_event(
            event.body,
            failures,
            partition=event.partition,
            offset=event.offset,
            occurred_at=now,
            mask=self._mask,
            max_bytes=self._max_event_bytes,
            payloads=handed_over(event.fetched),
        )
