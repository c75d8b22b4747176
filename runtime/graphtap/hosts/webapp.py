"""The web app App Service runs: probes, Prometheus metrics and a read-only status page.

Everything here reads; nothing changes state. The page is rendered on the server with no
external assets (the app may run in a network without internet egress), and it shows only
counts, positions, subscription metadata and the latest findings as every verdict holds
them (type, confidence, the masked preview, conversation, sender): never message content,
clientState or keys. Three small inline SVG charts draw the last hour from the process's
own samples (`graphtap.hosts.history`): notifications per second, lag per partition and
findings by type.
With an `AccessPolicy` (on Azure, from the stack's app settings) every path but /healthz
needs a signed-in caller holding the policy's app role (see `graphtap.hosts.access`).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from graphtap.hosts import charts
from graphtap.hosts.access import AccessGate, AccessPolicy
from graphtap.hosts.findings import FindingRow, FindingsError
from graphtap.hosts.history import LATEST_FINDINGS, StatusHistory
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.summary import Summary

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REFRESH_SECONDS = 10


class SubscriptionView(Protocol):
    @property
    def resource(self) -> str: ...
    @property
    def id(self) -> str | None: ...
    @property
    def expiration(self) -> dt.datetime | None: ...
    @property
    def last_action(self) -> str: ...
    @property
    def state(self) -> str: ...


class ResyncJobView(Protocol):
    """A resync job's progress: counts and times, no content."""

    @property
    def id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def start(self) -> dt.datetime: ...
    @property
    def end(self) -> dt.datetime: ...
    @property
    def state(self) -> str: ...
    @property
    def units_total(self) -> int: ...
    @property
    def units_done(self) -> int: ...
    @property
    def units_failed(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def units_per_second(self) -> float: ...
    @property
    def messages_per_second(self) -> float: ...
    @property
    def last_error(self) -> str | None: ...


class ControlPlaneView(Protocol):
    @property
    def subscriptions(self) -> Sequence[SubscriptionView]: ...
    @property
    def errors(self) -> Sequence[str]: ...
    @property
    def resync_jobs(self) -> Sequence[ResyncJobView]: ...
    @property
    def role(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def lifecycle_poisoned(self) -> Sequence[PoisonedView]: ...


class PoisonedView(Protocol):
    @property
    def event(self) -> str: ...
    @property
    def subscription_id(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...


@dataclass
class StatusSources:
    """Where the app reads what it shows; the serve command wires these to the processor."""

    mode: str
    summary: Callable[[], Summary]
    partitions: Callable[[], Sequence[PartitionStatus]]
    ready: Callable[[], bool]
    control_plane: Callable[[], ControlPlaneView] | None = None
    #: Batches that failed and will be delivered again (a sink outage, a lost checkpoint).
    failed_batches: Callable[[], int] = lambda: 0
    #: Background work that stopped for good; /healthz then fails so the host replaces us.
    failed_tasks: Callable[[], Sequence[str]] = lambda: ()
    #: The samples the charts draw; sampled by whoever runs the service (see `serve`).
    history: StatusHistory | None = None
    #: The newest findings rows (at most the number asked for), newest first.
    latest_findings: Callable[[int], Sequence[FindingRow]] | None = None


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def create_app(
    sources: StatusSources,
    *,
    lifespan: Lifespan | None = None,
    access: AccessPolicy | None = None,
) -> Starlette:
    """The web app; with `access`, only callers holding its app roles get past /healthz."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Metrics(sources))

    async def healthz(request: Request) -> Response:
        failed = sources.failed_tasks()
        if failed:
            return PlainTextResponse(f"failed: {', '.join(failed)}", 503)
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        ready = sources.ready()
        return PlainTextResponse("ready" if ready else "not ready", 200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=PROMETHEUS_CONTENT_TYPE)

    async def status_json(request: Request) -> Response:
        return JSONResponse(_status(sources))

    async def status_page(request: Request) -> Response:
        return HTMLResponse(render_status_page(sources))

    return Starlette(
        routes=[
            Route("/", status_page),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/status.json", status_json),
        ],
        middleware=[Middleware(AccessGate, policy=access)] if access is not None else None,
        lifespan=lifespan,
    )


async def serve(app: Starlette, *, host: str, port: int) -> None:
    """Run uvicorn in the current event loop until it receives SIGTERM or SIGINT."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    await uvicorn.Server(config).serve()


# -- metrics ------------------------------------------------------------------------------


class _Metrics(Collector):
    """Read at scrape time from the processor's own bookkeeping: nothing is counted twice."""

    def __init__(self, sources: StatusSources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        summary = self._sources.summary()
        for name, value, help_text in (
            ("events", summary.events, "Event Hubs events committed"),
            ("notifications", summary.notifications, "Change notifications processed"),
            ("verdicts", summary.verdicts, "New verdicts written to the sink"),
            ("duplicate_verdicts", summary.duplicate_verdicts, "Verdicts the sink had already"),
            ("lifecycle_events", summary.lifecycle_queued, "Lifecycle events queued"),
            ("validation_skipped", summary.validation_skipped, "Graph validation events"),
        ):
            yield CounterMetricFamily(f"graphtap_{name}", help_text, value=value)
        yield CounterMetricFamily(
            "graphtap_failed_batches",
            "Batches that failed before their checkpoint and are delivered again",
            value=self._sources.failed_batches(),
        )
        findings = CounterMetricFamily(
            "graphtap_findings", "Findings by detector type", labels=["type"]
        )
        for kind, count in sorted(summary.findings_by_type.items()):
            findings.add_metric([kind], count)
        yield findings
        dead = CounterMetricFamily(
            "graphtap_dead_letters", "Dead letters by reason code", labels=["reason"]
        )
        for reason, count in sorted(summary.dead_letters_by_reason.items()):
            dead.add_metric([reason], count)
        yield dead
        lag = GaugeMetricFamily(
            "graphtap_partition_lag", "Events after the checkpoint", labels=["partition"]
        )
        rate = GaugeMetricFamily(
            "graphtap_partition_events_per_second",
            "Checkpoint movement over the last minute",
            labels=["partition"],
        )
        owned = GaugeMetricFamily(
            "graphtap_partition_owned", "1 when this instance reads it", labels=["partition"]
        )
        for partition in self._sources.partitions():
            if partition.lag is not None:
                lag.add_metric([partition.partition], partition.lag)
            rate.add_metric([partition.partition], partition.events_per_second)
            owned.add_metric([partition.partition], 1 if partition.owned else 0)
        yield from (lag, rate, owned)
        yield GaugeMetricFamily(
            "graphtap_ready", "1 when the processor is running", value=int(self._sources.ready())
        )
        if self._sources.control_plane is not None:
            expiry = GaugeMetricFamily(
                "graphtap_subscription_expiry_seconds",
                "Seconds until the subscription expires",
                labels=["resource", "state"],
            )
            now = dt.datetime.now(dt.UTC)
            for sub in self._sources.control_plane().subscriptions:
                if sub.expiration is not None:
                    seconds = (sub.expiration - now).total_seconds()
                    expiry.add_metric([sub.resource, sub.state], seconds)
            yield expiry


# -- status -------------------------------------------------------------------------------


def _status(sources: StatusSources) -> dict[str, Any]:
    subscriptions: list[dict[str, Any]] | None = None
    resyncs: list[dict[str, Any]] | None = None
    control_plane: dict[str, Any] | None = None
    if sources.control_plane is not None:
        plane = sources.control_plane()
        control_plane = {
            "role": plane.role,
            "instance": plane.instance,
            "lifecycle_poisoned": [
                {
                    "event": p.event,
                    "subscription_id": p.subscription_id,
                    "attempts": p.attempts,
                    "last_error": p.last_error,
                }
                for p in plane.lifecycle_poisoned
            ],
        }
        resyncs = [_resync_json(job) for job in sources.control_plane().resync_jobs]
        subscriptions = [
            {
                "resource": s.resource,
                "id": s.id,
                "expiration": s.expiration.isoformat() if s.expiration else None,
                "last_action": s.last_action,
                "state": s.state,
            }
            for s in sources.control_plane().subscriptions
        ]
    return {
        "mode": sources.mode,
        "ready": sources.ready(),
        "summary": sources.summary().to_dict(),
        "failed_batches": sources.failed_batches(),
        "partitions": [
            {
                "partition": p.partition,
                "owned": p.owned,
                "last_sequence": p.last_sequence,
                "last_enqueued": p.last_enqueued,
                "lag": p.lag,
                "events_per_second": round(p.events_per_second, 1),
            }
            for p in sources.partitions()
        ],
        "control_plane": control_plane,
        "subscriptions": subscriptions,
        "resyncs": resyncs,
        "latest_findings": [row.to_dict() for row in _latest(sources)[0]],
        "series": sources.history.to_dict() if sources.history is not None else None,
    }


def _resync_json(job: ResyncJobView) -> dict[str, Any]:
    return {
        "id": job.id,
        "reason": job.reason,
        "start": job.start.isoformat(),
        "end": job.end.isoformat(),
        "state": job.state,
        "units_total": job.units_total,
        "units_done": job.units_done,
        "units_failed": job.units_failed,
        "in_flight": job.in_flight,
        "messages": job.messages,
        "units_per_second": round(job.units_per_second, 2),
        "messages_per_second": round(job.messages_per_second, 2),
        "last_error": job.last_error,
    }


def _latest(sources: StatusSources) -> tuple[Sequence[FindingRow], str | None]:
    """The newest findings rows, or none and why (a store not written yet, say)."""
    if sources.latest_findings is None:
        return (), None
    try:
        return sources.latest_findings(LATEST_FINDINGS), None
    except FindingsError as exc:
        return (), str(exc)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1f23;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:1.8rem 0 .5rem}
table{border-collapse:collapse;min-width:28rem;background:#fff}
th,td{border:1px solid #d1d5da;padding:.3rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f3f6}
.muted{color:#586069}.bad{color:#b31d28;font-weight:600}.ok{color:#22863a;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts figure{margin:0}
.charts figcaption{font-weight:600;margin-bottom:.3rem}
svg.chart{display:block;font-size:10px;fill:#586069}
.legend{list-style:none;margin:.3rem 0 0;padding:0;font-size:.85rem;max-width:360px}
.legend li{display:inline-block;margin-right:.8rem}
.swatch{display:inline-block;width:.7rem;height:.7rem;margin-right:.3rem;vertical-align:middle}
#latest-findings td{font-size:.85rem}#latest-findings td:first-child{white-space:nowrap}
#latest-findings td:nth-child(n+6){word-break:break-all;max-width:24rem}
"""


def render_status_page(sources: StatusSources, *, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    summary = sources.summary()
    ready = sources.ready()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>",
        f"<title>graphtap status</title><style>{_STYLE}</style></head><body>",
        "<h1>graphtap status</h1>",
        f"<p class='muted'>{_e(sources.mode)} &middot; "
        f"<span class='{'ok' if ready else 'bad'}'>{'ready' if ready else 'not ready'}</span>"
        f" &middot; {now:%Y-%m-%d %H:%M:%S} UTC</p>",
        _charts(sources.history, now),
        _totals(summary, sources.failed_batches()),
        _latest_findings(sources),
        _subscriptions(sources, now),
        _resyncs(sources),
        _partitions(sources.partitions()),
        _counts(
            "findings", "Findings by type", "type", summary.findings_by_type, "No findings yet."
        ),
        _counts(
            "dead-letters",
            "Dead letters by reason",
            "reason",
            summary.dead_letters_by_reason,
            "No dead letters.",
        ),
        "</body></html>",
    ]
    return "".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{_e(cell)}</td>" if i in numeric else f"<td>{_e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _totals(summary: Summary, failed_batches: int) -> str:
    rows = [
        ("events", summary.events),
        ("notifications", summary.notifications),
        ("verdicts", summary.verdicts),
        ("duplicate verdicts", summary.duplicate_verdicts),
        ("lifecycle events queued", summary.lifecycle_queued),
        ("dead letters", summary.dead_letters),
        ("failed batches (delivered again)", failed_batches),
    ]
    return (
        "<section id='totals'><h2>Totals since this process started</h2>"
        + _table(("what", "count"), rows, {1})
        + ("</section>")
    )


def _subscriptions(sources: StatusSources, now: dt.datetime) -> str:
    head = "<section id='subscriptions'><h2>Subscriptions</h2>"
    if sources.control_plane is None:
        return (
            head + "<p>No control plane is configured in this process, so no subscriptions "
            "are managed here (the local hub has none).</p></section>"
        )
    status = sources.control_plane()
    # Only the leader writes to Graph; a standby's rows are what it saw when it last led.
    role = (
        f"<p id='control-plane-role' class='{'ok' if status.role == 'leader' else 'muted'}'>"
        f"{_e(status.instance)} is the control plane's <strong>{_e(status.role)}</strong>"
        f"{'' if status.role == 'leader' else ': another instance renews the subscriptions'}"
        ".</p>"
    )
    if not status.subscriptions:
        table = "<p>The control plane tracks no subscriptions yet.</p>"
    else:
        table = _table(
            ("resource", "subscription id", "expires", "expires in", "last action", "state"),
            (
                (
                    s.resource,
                    s.id or "-",
                    f"{s.expiration:%Y-%m-%d %H:%M} UTC" if s.expiration else "-",
                    _until(s.expiration, now),
                    s.last_action,
                    s.state,
                )
                for s in status.subscriptions
            ),
            set(),
        )
    errors = ""
    if status.errors:
        items = "".join(f"<li>{_e(e)}</li>" for e in list(status.errors)[-5:])
        errors = f"<p class='bad'>Recent control-plane errors:</p><ul>{items}</ul>"
    poisoned = ""
    if status.lifecycle_poisoned:
        rows = "".join(
            f"<li>{_e(p.event)} for {_e(p.subscription_id)} after {p.attempts} attempts: "
            f"{_e(p.last_error or 'no error recorded')}</li>"
            for p in status.lifecycle_poisoned
        )
        poisoned = (
            "<p class='bad' id='lifecycle-poison'>Lifecycle events set aside after failing "
            f"repeatedly (the poison queue):</p><ul>{rows}</ul>"
        )
    return head + role + table + errors + poisoned + "</section>"


def _resyncs(sources: StatusSources) -> str:
    """Gap resyncs of this process: running, interrupted (resumed from their cursor) and the
    last few finished."""
    if sources.control_plane is None:
        return ""
    jobs = sources.control_plane().resync_jobs
    head = "<section id='resyncs'><h2>Gap resyncs</h2>"
    if not jobs:
        return head + "<p>No resync has run in this process.</p></section>"
    table = _table(
        (
            "reason",
            "window (UTC)",
            "state",
            "units done",
            "failed",
            "in flight",
            "messages",
            "units/s",
            "messages/s",
            "last error",
        ),
        (
            (
                job.reason,
                f"{job.start:%Y-%m-%d %H:%M} to {job.end:%Y-%m-%d %H:%M}",
                job.state,
                f"{job.units_done} / {job.units_total}",
                job.units_failed,
                job.in_flight,
                job.messages,
                f"{job.units_per_second:.1f}",
                f"{job.messages_per_second:.1f}",
                job.last_error or "-",
            )
            for job in jobs
        ),
        {3, 4, 5, 6, 7, 8},
    )
    return head + table + "</section>"


def _until(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


def _partitions(partitions: Sequence[PartitionStatus]) -> str:
    head = "<section id='partitions'><h2>Partitions</h2>"
    if not partitions:
        return head + "<p>No partitions are assigned to this instance yet.</p></section>"
    rows = (
        (
            p.partition,
            "yes" if p.owned else "no",
            "-" if p.last_sequence is None else p.last_sequence,
            "-" if p.last_enqueued is None else p.last_enqueued,
            "-" if p.lag is None else p.lag,
            f"{p.events_per_second:,.1f}",
        )
        for p in partitions
    )
    headers = ("partition", "owned", "checkpoint", "last enqueued", "lag", "events/s")
    return head + _table(headers, rows, {2, 3, 4, 5}) + "</section>"


def _counts(anchor: str, title: str, label: str, counts: dict[str, int], empty: str) -> str:
    head = f"<section id='{anchor}'><h2>{_e(title)}</h2>"
    if not counts:
        return head + f"<p>{_e(empty)}</p></section>"
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return head + _table((label, "count"), rows, {1}) + "</section>"


def _charts(history: StatusHistory | None, now: dt.datetime) -> str:
    head = "<section id='charts'><h2>The last hour</h2>"
    if history is None:
        return head + "<p>This process keeps no samples to draw.</p></section>"
    samples = history.samples()
    end = max(now.timestamp(), samples[-1].time if samples else 0.0)
    window = charts.span(samples, end=end, window=history.window)
    figures = (
        ("notifications", "Notifications per second", charts.notifications_chart),
        ("lag", "Lag per partition", charts.lag_chart),
        ("findings-by-type", "Findings by type", charts.findings_chart),
    )
    body = "".join(
        f"<figure id='chart-{anchor}'><figcaption>{_e(title)}</figcaption>"
        f"{draw(samples, end=end, window=window)}</figure>"
        for anchor, title, draw in figures
    )
    every = f"one sample every {history.interval:g} s since this process started"
    return head + f"<p class='muted'>{_e(every)}</p><div class='charts'>{body}</div></section>"


def _latest_findings(sources: StatusSources) -> str:
    head = "<section id='latest-findings'><h2>Latest findings (values masked)</h2>"
    if sources.latest_findings is None:
        return head + "<p>This process has no findings to show.</p></section>"
    rows, problem = _latest(sources)
    if problem is not None:
        return head + f"<p class='muted'>{_e(problem)}</p></section>"
    if not rows:
        return head + "<p>No findings yet.</p></section>"
    headers = (
        "time (UTC)",
        "severity",
        "type",
        "confidence",
        "preview",
        "conversation",
        "sender",
        "action",
    )
    cells = (
        (
            f"{row.time:%Y-%m-%d %H:%M:%S}",
            row.severity,
            row.type,
            row.confidence,
            row.preview,
            row.conversation_id or "-",
            row.sender_id or "-",
            row.action or "-",
        )
        for row in rows
    )
    return head + _table(headers, cells, {3}) + "</section>"
