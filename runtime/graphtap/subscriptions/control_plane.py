"""The continuous control plane: keeps every declared subscription alive, inside the web host.

Four loops share one reconciler: a jittered renewal check (from the expiries it already
knows, without listing), a full reconcile every few minutes, the lifecycle queue the
processor fills, and a watcher that moves every subscription to a new Key Vault
certificate version. Renewal is always a PATCH (which also reauthorizes); graphtap never
sends a reauthorize, so a PATCH and a reauthorize can never meet within 10 minutes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError

from graphtap.deployment import Deployment
from graphtap.processing import lifecycle
from graphtap.processing.lifecycle import (
    LifecycleEvent,
    LifecycleQueue,
    PoisonedEvent,
    SharedLifecycle,
)
from graphtap.subscriptions.certificates import graph_certificate_value
from graphtap.subscriptions.clock import Clock, SystemClock, utcnow
from graphtap.subscriptions.cursor import CursorStore
from graphtap.subscriptions.deltalinks import DeltaLinkStore
from graphtap.subscriptions.desired import DesiredState, DesiredSubscription, load_desired
from graphtap.subscriptions.graph import (
    GraphError,
    GraphExports,
    GraphSubscription,
    GraphSubscriptions,
    build_client,
)
from graphtap.subscriptions.keyvault import (
    DEFAULT_CLIENT_STATE_SECRET,
    EncryptionCertificate,
    KeyVault,
)
from graphtap.subscriptions.leadership import Leadership, NotLeader
from graphtap.subscriptions.mailsync import GraphMailFolders, Mailbox, MailResync, mailboxes
from graphtap.subscriptions.reconcile import (
    Action,
    Kind,
    Outcome,
    Reconciler,
    Target,
    owned,
    renewal_due,
)
from graphtap.subscriptions.resync import JobProgress, Resync, ResyncSettings, ResyncSink
from graphtap.subscriptions.throttle import RetryableError, ThrottleSettings, WriteThrottle

log = logging.getLogger(__name__)
MAX_ERRORS = 20
#: Failed writes that leave a subscription to expire: what the renewal-failure alert counts.
RENEWAL_KINDS = frozenset({Kind.RENEW, Kind.REKEY, Kind.CREATE})


@dataclass(frozen=True)
class ControlPlaneSettings:
    renewal_check: float = 60.0
    reconcile_interval: float = 300.0
    lifecycle_poll: float = 10.0
    rotation_check: float = 900.0
    jitter: float = 0.2
    #: How far back a `missed` event is resynced.
    missed_window: dt.timedelta = dt.timedelta(hours=1)
    #: Extra time resynced before a gap starts, for clock skew and delivery latency.
    gap_margin: dt.timedelta = dt.timedelta(minutes=5)
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    resync: ResyncSettings = field(default_factory=ResyncSettings)


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    resource: str
    id: str | None
    expiration: dt.datetime | None
    last_action: str
    state: str


@dataclass(frozen=True, slots=True)
class ControlPlaneStatus:
    subscriptions: tuple[SubscriptionStatus, ...]
    last_reconcile: dt.datetime | None
    errors: tuple[str, ...]
    certificate_id: str | None = None
    resyncs: int = 0
    resync_jobs: tuple[JobProgress, ...] = ()
    #: "leader" or "standby" (`Leadership`), and which instance this is.
    role: str = "leader"
    instance: str = "local"
    #: Lifecycle events set aside after failing too often, as of the last drain.
    lifecycle_poisoned: tuple[PoisonedEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    """Since when changes may have gone unnotified, and for which subscriptions' resources
    (None: all of them, as after downtime)."""

    start: dt.datetime
    resources: frozenset[str] | None = None


@dataclass
class _Tracked:
    subscription: GraphSubscription | None
    last_action: str
    state: str
    #: When the control plane last saw the subscription alive in Graph.
    confirmed_at: dt.datetime | None = None


@dataclass
class _State:
    tracked: dict[str, _Tracked] = field(default_factory=dict)
    last_reconcile: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)
    resyncs: int = 0
    #: Running totals of failed renewals, by the kind of write (`RENEWAL_KINDS`).
    renewal_failures: Counter[str] = field(default_factory=Counter)
    poisoned: tuple[PoisonedEvent, ...] = ()


class ControlPlane:
    def __init__(
        self,
        *,
        desired: DesiredState,
        reconciler: Reconciler,
        keyvault: KeyVault,
        certificate_name: str,
        notification_url: str,
        clock: Clock,
        settings: ControlPlaneSettings = ControlPlaneSettings(),
        lifecycle_queue: LifecycleQueue | SharedLifecycle | None = None,
        resync: Resync | None = None,
        on_certificate: Callable[[EncryptionCertificate], Awaitable[None]] | None = None,
        heartbeat: Path | None = None,
        rng: random.Random | None = None,
        client_state_secret: str = DEFAULT_CLIENT_STATE_SECRET,
        leadership: Leadership | None = None,
        mail_resync: MailResync | None = None,
        blob_store_url: str | None = None,
    ) -> None:
        self.desired = desired
        self.reconciler = reconciler
        self.keyvault = keyvault
        self.certificate_name = certificate_name
        self.notification_url = notification_url
        self.clock = clock
        self.settings = settings
        self.lifecycle_queue = lifecycle_queue
        self.resync = resync
        #: Mail gaps: per-folder delta queries (Teams gaps go to `resync`).
        self.mail_resync = mail_resync
        self.on_certificate = on_certificate
        self.heartbeat = heartbeat
        self.client_state_secret = client_state_secret
        #: Rich subscriptions' `blobStoreUrl`, when the deployment has a payload store.
        self.blob_store_url = blob_store_url
        #: Runs the loops only while this instance holds the leader lease (local: always).
        self.leadership = leadership or Leadership.single(clock)
        self._rng = rng or random.Random()
        self._state = _State()
        self._target: Target | None = None
        self._certificate: EncryptionCertificate | None = None
        self._client_state: str | None = None

    @classmethod
    def from_deployment(
        cls,
        deployment: Deployment,
        credential: AsyncTokenCredential,
        *,
        desired: DesiredState | None = None,
        clock: Clock | None = None,
        settings: ControlPlaneSettings = ControlPlaneSettings(),
        lifecycle_queue: LifecycleQueue | SharedLifecycle | None = None,
        resync_sink: ResyncSink | None = None,
        graph_transport: httpx.AsyncBaseTransport | None = None,
        keyvault_options: dict[str, object] | None = None,
        heartbeat: Path | None = None,
        resync_store: CursorStore | None = None,
        instance: str = "local",
        leadership: Leadership | None = None,
        delta_links: DeltaLinkStore | None = None,
    ) -> ControlPlane:
        """The control plane for a deployed environment (stack outputs or app settings).

        `resync_store` keeps resync jobs across restarts (without one they live only in this
        process); `instance` names this host in the claims on them; `delta_links` keeps
        each mailbox folder's delta link for mail resync."""
        clock = clock or SystemClock()
        client = build_client(
            credential, endpoint=deployment.graph_endpoint, transport=graph_transport
        )
        throttle = WriteThrottle(clock, settings.throttle)
        resync = (
            Resync(
                GraphExports(client),
                resync_sink,
                tenant_id=deployment.tenant_id,
                clock=clock,
                store=resync_store,
                owner=instance,
                settings=settings.resync,
            )
            if resync_sink is not None
            else None
        )
        mail_resync = (
            MailResync(
                GraphMailFolders(client),
                resync_sink,
                tenant_id=deployment.tenant_id,
                clock=clock,
                links=delta_links,
            )
            if resync_sink is not None
            else None
        )
        return cls(
            desired=desired or load_desired(deployment.environment),
            reconciler=Reconciler(
                GraphSubscriptions(client),
                throttle,
                clock,
                fence=leadership.fence if leadership is not None else None,
            ),
            keyvault=KeyVault(deployment.key_vault_uri, credential, **(keyvault_options or {})),
            certificate_name=deployment.certificate_name,
            notification_url=deployment.notification_url,
            clock=clock,
            settings=settings,
            lifecycle_queue=lifecycle_queue,
            resync=resync,
            heartbeat=heartbeat,
            client_state_secret=deployment.client_state_secret,
            leadership=leadership,
            mail_resync=mail_resync,
            blob_store_url=deployment.blob_store_url,
        )

    # -- status ---------------------------------------------------------------------------

    def status(self) -> ControlPlaneStatus:
        return ControlPlaneStatus(
            subscriptions=tuple(
                SubscriptionStatus(
                    resource,
                    t.subscription.id if t.subscription else None,
                    t.subscription.expiration if t.subscription else None,
                    t.last_action,
                    t.state,
                )
                for resource, t in sorted(self._state.tracked.items())
            ),
            last_reconcile=self._state.last_reconcile,
            errors=tuple(self._state.errors),
            certificate_id=self._certificate.certificate_id if self._certificate else None,
            resyncs=self._state.resyncs,
            resync_jobs=self.resync.progress() if self.resync is not None else (),
            role=self.leadership.role,
            instance=self.leadership.instance,
            lifecycle_poisoned=self._state.poisoned,
        )

    def observations(self) -> Iterator[tuple[str, float, Mapping[str, str]]]:
        """For `telemetry.observe_metrics`: seconds until each known subscription expires
        (negative once it has) and the failed renewals so far."""
        now = utcnow(self.clock)
        for resource, tracked in sorted(self._state.tracked.items()):
            if tracked.subscription is not None:
                left = (tracked.subscription.expiration - now).total_seconds()
                yield "subscription.expiry_seconds", left, {"resource": resource}
        for kind, count in sorted(self._state.renewal_failures.items()):
            yield "subscription.renewal_failures", count, {"action": kind}

    # -- the service ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the subscriptions alive until `stop` is set, in every term this instance
        leads; a standby only holds out for the lease."""
        holder = asyncio.create_task(self.leadership.hold(stop))
        try:
            while (term := await self._stand_by(stop)) is not None:
                ended = asyncio.Event()
                watch = asyncio.create_task(self._watch_term(term, stop, ended))
                try:
                    await self._lead(ended)
                finally:
                    watch.cancel()
                if stop.is_set():
                    break
        finally:
            if not stop.is_set():  # cancelled: the lease is let go as the process ends
                holder.cancel()
            await asyncio.gather(holder, return_exceptions=True)
            if self.resync is not None:
                await self.resync.store.close()
            if self.mail_resync is not None:
                await self.mail_resync.links.close()

    async def _stand_by(self, stop: asyncio.Event) -> int | None:
        """Until this instance is elected, it only reads: what Graph holds (so a standby's
        status page shows the subscriptions too) and the certificate's newest version (so
        its processor has the key before the leader moves the subscriptions to it)."""
        if self.leadership.is_leader():
            return await self.leadership.elected(stop)
        standing = asyncio.Event()
        tasks = [
            asyncio.create_task(self._observe(standing)),
            asyncio.create_task(
                self._every(standing, self.settings.rotation_check, "rotation", self.refresh_target)
            ),
            # The process is up: a takeover later resyncs no "downtime" it never had.
            asyncio.create_task(
                self._every(standing, self.settings.renewal_check, "heartbeat", self._alive)
            ),
        ]
        try:
            return await self.leadership.elected(stop)
        finally:
            standing.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _alive(self) -> None:
        self._beat()

    async def _observe(self, standing: asyncio.Event) -> None:
        await self._guard("observe", self.observe)
        await self._every(standing, self.settings.reconcile_interval, "observe", self.observe)

    async def observe(self) -> None:
        """A standby's view: this deployment's subscriptions as Graph lists them."""
        actual = owned(await self.reconciler.list_all(), self.notification_url)
        now = utcnow(self.clock)
        for want in self.desired.subscriptions:
            found = next((s for s in actual if s.resource == want.resource), None)
            if found is not None:
                self._state.tracked[want.resource] = _Tracked(found, "observed", "standby", now)

    async def _watch_term(self, term: int, stop: asyncio.Event, ended: asyncio.Event) -> None:
        await self.leadership.term_over(term, stop)
        ended.set()

    async def _lead(self, ended: asyncio.Event) -> None:
        """One term, until `ended`: start from what Graph holds, then loop."""
        await self._guard("start", self.refresh_target)
        # A resync a stopped process left goes on from its cursor before anything new starts.
        await self._guard("resync", self.resume_resyncs)
        await self._guard("reconcile", self.reconcile)
        await self._guard("downtime", self._resync_downtime)
        loops = [
            self._every(ended, self.settings.renewal_check, "renewal", self._renewal_round),
            self._every(
                ended, self.settings.reconcile_interval, "reconcile", self._reconcile_round
            ),
            self._every(ended, self.settings.rotation_check, "rotation", self.check_rotation),
        ]
        if self.lifecycle_queue is not None:
            loops.append(
                self._every(ended, self.settings.lifecycle_poll, "lifecycle", self.drain_lifecycle)
            )
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await ended.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _every(
        self,
        stop: asyncio.Event,
        interval: float,
        name: str,
        job: Callable[[], Awaitable[object]],
    ) -> None:
        while not stop.is_set():
            spread = interval * self.settings.jitter
            await self.clock.sleep(interval + self._rng.uniform(-spread, spread))
            if not stop.is_set():
                await self._guard(name, job)

    async def _guard(self, name: str, job: Callable[[], Awaitable[object]]) -> None:
        """A failing round is recorded and retried next round; the loops never die."""
        try:
            await job()
        except (GraphError, RetryableError, AzureError, OSError, ValueError, RuntimeError) as error:
            self._error(f"{name}: {error}")
        except Exception as error:
            # A fault no rule anticipated (a bug): its traceback for whoever fixes it, its
            # line on the status page, and the next round still runs.
            log.exception("control plane: %s round failed unexpectedly", name)
            self._error(f"{name}: unexpected {type(error).__name__}: {error}")

    def _error(self, message: str) -> None:
        log.warning("control plane: %s", message)
        stamp = utcnow(self.clock).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._state.errors = [*self._state.errors, f"{stamp} {message}"][-MAX_ERRORS:]

    # -- jobs -----------------------------------------------------------------------------

    async def refresh_target(self) -> Target:
        """clientState and the current certificate version, from Key Vault."""
        if self._client_state is None:
            # Read only: `graphtap bootstrap` creates it; the runtime may not write secrets.
            self._client_state = await self.keyvault.client_state(self.client_state_secret)
        certificate = await self.keyvault.certificate(self.certificate_name)
        if self._certificate is None or certificate.version != self._certificate.version:
            if self.on_certificate is not None:
                await self.on_certificate(certificate)
            self._certificate = certificate
        self._target = Target(
            notification_url=self.notification_url,
            client_state=self._client_state,
            certificate=graph_certificate_value(certificate.certificate),
            certificate_id=certificate.certificate_id,
            blob_store_url=self.blob_store_url,
        )
        return self._target

    async def target(self) -> Target:
        return self._target if self._target is not None else await self.refresh_target()

    async def reconcile(self) -> list[Outcome]:
        outcomes = await self.reconciler.reconcile(self.desired, await self.target())
        gap = self._record(outcomes)
        self._state.last_reconcile = utcnow(self.clock)
        await self._resync_gap(gap, "subscription recreated")
        return outcomes

    async def _reconcile_round(self) -> None:
        await self.reconcile()
        # A job stopped by an error (throttled past every retry, a permission missing) or
        # left by an instance that went quiet is taken up again; so are mail folders set aside.
        await self.resume_resyncs()
        await self.retry_mail_resync()

    async def retry_mail_resync(self) -> None:
        """Read again the mail folders earlier resyncs could not finish."""
        if self.mail_resync is None or self._client_state is None:
            return
        report = await self.mail_resync.retry(client_state=self._client_state)
        if report is not None and report.failed_folders:
            self._error(f"mail resync retry: {self.mail_resync.last_error}")

    async def resume_resyncs(self) -> None:
        """Finish the unfinished resync jobs in the store, each from its cursor."""
        if self.resync is None:
            return
        if self._certificate is None or self._client_state is None:
            await self.refresh_target()
        assert self._certificate is not None
        assert self._client_state is not None
        for report in await self.resync.resume(
            certificate=self._certificate, client_state=self._client_state
        ):
            self._state.resyncs += 1
            log.info(
                "resync resumed (%s): %d messages, %d new verdicts",
                report.reason,
                report.messages,
                report.new_verdicts,
            )

    async def renew_due(self) -> list[Outcome]:
        """Renew what is due from the expiries already known: no list call needed."""
        now = utcnow(self.clock)
        target = await self.target()
        wanted = {s.resource: s for s in self.desired.subscriptions}
        due = [
            (t.subscription, wanted[resource])
            for resource, t in self._state.tracked.items()
            if t.subscription is not None
            and resource in wanted
            and renewal_due(t.subscription, wanted[resource], self.desired.renew_at, now)
        ]
        outcomes = list(
            await asyncio.gather(*(self._renew(actual, want, target) for actual, want in due))
        )
        await self._resync_gap(self._record(outcomes), "subscription recreated")
        return outcomes

    async def _renew(
        self, actual: GraphSubscription, want: DesiredSubscription, target: Target
    ) -> Outcome:
        return await self.reconciler.execute(Action(Kind.RENEW, want, actual), target)

    async def check_rotation(self) -> list[Outcome]:
        """A newer certificate version in Key Vault: move every subscription to it."""
        before = self._certificate.version if self._certificate else None
        await self.refresh_target()
        if self._certificate is not None and self._certificate.version != before:
            log.info("certificate %s: new version, re-keying", self.certificate_name)
            return await self.reconcile()
        return []

    async def _renewal_round(self) -> None:
        await self.renew_due()
        self._beat()

    def _beat(self) -> None:
        """Record that the control plane is alive, so a restart knows how long it was down."""
        if self.heartbeat is not None:
            self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat.write_text(f"{self.clock.time():.3f}\n")

    async def _resync_downtime(self) -> None:
        """After downtime longer than a few renewal rounds, read the gap back.

        The one interval read on the wall clock: it spans a restart, which no monotonic
        clock survives. A wall clock stepped forward costs one extra resync (replays add no
        verdicts); the loops themselves sleep on the monotonic clock.
        """
        if self.heartbeat is None or not self.heartbeat.exists():
            self._beat()
            return
        last = float(self.heartbeat.read_text().strip() or "0")
        if self.clock.time() - last > 3 * self.settings.renewal_check:
            await self._resync_gap(
                Gap(dt.datetime.fromtimestamp(last, dt.UTC)), "control plane downtime"
            )
        self._beat()

    async def rotate(self) -> list[Outcome]:
        """`graphtap keys rotate`: issue a new version now, then re-key."""
        await self.keyvault.rotate(self.certificate_name)
        return await self.check_rotation()

    async def drain_lifecycle(self) -> None:
        """Handle what the processors queued; an event that keeps failing is set aside."""
        assert self.lifecycle_queue is not None
        queue = lifecycle.shared(self.lifecycle_queue)
        for event in await queue.pending():
            try:
                await self.handle(event)
            except NotLeader:
                raise  # not the event's failure: the next leader receives it again
            except (
                GraphError,
                RetryableError,
                AzureError,
                OSError,
                ValueError,
                RuntimeError,
            ) as error:
                # Counted against the event, and the drain goes on with the others.
                await queue.retry_later(event, str(error))
                self._error(f"lifecycle {event.event} {event.subscription_id}: {error}")
            else:
                await queue.complete(event)
        self._state.poisoned = tuple(await queue.poisoned())

    async def handle(self, event: LifecycleEvent) -> None:
        tracked = self._by_id(event.subscription_id)
        wanted = {s.resource: s for s in self.desired.subscriptions}
        target = await self.target()
        if event.event == lifecycle.REAUTHORIZATION_REQUIRED:
            if tracked is None or tracked.subscription is None:
                await self.reconcile()
                return
            want = wanted.get(tracked.subscription.resource)
            if want is not None:
                outcome = await self._renew(tracked.subscription, want, target)
                await self._resync_gap(self._record([outcome]), "subscription recreated")
                if outcome.error is not None:
                    raise outcome.error  # the event stays queued and is tried again
        elif event.event == lifecycle.SUBSCRIPTION_REMOVED:
            # Recreating what is missing resyncs from when it was last seen alive.
            await self.reconcile()
        elif event.event == lifecycle.MISSED:
            # Only the subscription that missed: a mailbox's folders, or Teams' exports
            # (one not known yet: everything).
            resources = None
            if tracked is not None and tracked.subscription is not None:
                resources = frozenset({tracked.subscription.resource})
            start = utcnow(self.clock) - self.settings.missed_window
            await self._resync_gap(Gap(start, resources), "missed notifications", strict=True)
        else:
            log.warning("unknown lifecycle event %r: ignored", event.event)

    async def resync_downtime(self, since: dt.datetime) -> None:
        """The host was down since `since`: read back what it may have missed."""
        await self._resync_gap(Gap(since), "control plane downtime")

    async def _resync_gap(self, gap: Gap | None, why: str, *, strict: bool = False) -> None:
        """Read the gap back: Teams resources through the export APIs, mailboxes through
        their folders' delta queries. `strict`: a mail resync whose every folder failed
        raises, so the lifecycle event that asked for it is kept and tried again."""
        if gap is None:
            return
        boxes, teams = self._split(gap.resources)
        start = gap.start - self.settings.gap_margin
        if teams:
            await self._resync_teams(start, why)
        if boxes:
            await self._resync_mail(boxes, start, why, strict=strict)

    def _split(self, resources: frozenset[str] | None) -> tuple[list[Mailbox], bool]:
        """The mailboxes among `resources` (None: every declared one), and whether any
        Teams resource is among them."""
        if resources is None:
            boxes = mailboxes(self.desired)
            teams = any(Mailbox.of(s.resource, ()) is None for s in self.desired.subscriptions)
            return boxes, teams
        types = {s.resource.lower(): s.change_types for s in self.desired.subscriptions}
        boxes, teams = [], False
        for resource in sorted(resources):
            box = Mailbox.of(resource, types.get(resource.lower(), ("created", "updated")))
            if box is None:
                teams = True
            else:
                boxes.append(box)
        return boxes, teams

    async def _resync_teams(self, start: dt.datetime, why: str) -> None:
        if self.resync is None or self._certificate is None or self._client_state is None:
            self._error(f"gap since {start:%Y-%m-%dT%H:%M:%SZ} ({why}) not resynced: no resync")
            return
        report = await self.resync.window(
            start,
            utcnow(self.clock),
            certificate=self._certificate,
            client_state=self._client_state,
            reason=why,
        )
        self._state.resyncs += 1
        log.info(
            "resync (%s): %d messages, %d new verdicts", why, report.messages, report.new_verdicts
        )

    async def _resync_mail(
        self, boxes: list[Mailbox], start: dt.datetime, why: str, *, strict: bool
    ) -> None:
        if self.mail_resync is None or self._client_state is None:
            self._error(
                f"mail gap since {start:%Y-%m-%dT%H:%M:%SZ} ({why}) not resynced: no mail resync"
            )
            return
        try:
            await self.mail_resync.run(boxes, start, client_state=self._client_state, reason=why)
        except GraphError:
            if strict:
                raise
            self._error(f"mail resync ({why}) failed: {self.mail_resync.last_error}")
            return
        self._state.resyncs += 1

    # -- bookkeeping ----------------------------------------------------------------------

    def _by_id(self, subscription_id: str) -> _Tracked | None:
        return next(
            (
                t
                for t in self._state.tracked.values()
                if t.subscription is not None and t.subscription.id == subscription_id
            ),
            None,
        )

    def _record(self, outcomes: list[Outcome]) -> Gap | None:
        """Remember what Graph said; returns when the earliest gap began, if one opened,
        and for which resources.

        A subscription that had to be created again (removed, expired, vanished) left a
        gap since it was last seen alive, whatever told the control plane about it.
        """
        now = utcnow(self.clock)
        gap: dt.datetime | None = None
        reopened: set[str] = set()
        for outcome in outcomes:
            previous = self._state.tracked.get(outcome.resource)
            # Any recreation left a window without a subscription (removed, expired, or
            # deleted to change its certificate or payload kind): the gap is read back.
            recreated = outcome.action == "created" or outcome.action.startswith("recreated")
            if recreated and previous is not None and previous.confirmed_at is not None:
                gap = min(gap or previous.confirmed_at, previous.confirmed_at)
                reopened.add(outcome.resource)
            if outcome.error is not None:
                self._error(f"{outcome.resource}: {outcome.error} ({outcome.error.hint})")
                kind = outcome.action.removesuffix(" failed")
                if kind in RENEWAL_KINDS:
                    self._state.renewal_failures[kind] += 1
                kept = previous.subscription if previous else None
                confirmed = previous.confirmed_at if previous else None
                self._state.tracked[outcome.resource] = _Tracked(
                    kept, outcome.action, "failing", confirmed
                )
                continue
            if outcome.action == "deleted":
                self._state.tracked.pop(outcome.resource, None)
                continue
            subscription = outcome.subscription or (previous.subscription if previous else None)
            self._state.tracked[outcome.resource] = _Tracked(
                subscription, outcome.action, "active", now
            )
        return Gap(gap, frozenset(reopened)) if gap is not None else None
