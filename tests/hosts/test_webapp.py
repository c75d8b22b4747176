"""The web app: probes, Prometheus text and the status page's sections, escaped."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from graphtap.hosts.webapp import StatusSources, create_app, render_status_page
from graphtap.processing.lifecycle import PoisonedEvent
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.summary import Summary
from graphtap.subscriptions.resync import JobProgress

NOW = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Subscription:
    resource: str
    id: str | None
    expiration: dt.datetime | None
    last_action: str
    state: str


@dataclass(frozen=True)
class ControlStatus:
    subscriptions: tuple[Subscription, ...]
    errors: tuple[str, ...] = ()
    resync_jobs: tuple[JobProgress, ...] = ()
    role: str = "leader"
    instance: str = "web-1"
    lifecycle_poisoned: tuple[PoisonedEvent, ...] = ()


class Client:
    """Requests straight into the ASGI app, no server."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    def get(self, path: str) -> httpx.Response:
        async def request() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(path)

        return asyncio.run(request())


def summary() -> Summary:
    s = Summary(events=12, notifications=30, verdicts=25, lifecycle_queued=1)
    s.findings_by_type = Counter({"credit_card_number": 4, "<b>odd</b>": 1})
    s.dead_letters_by_reason = Counter({"client_state_mismatch": 2, "malformed_event": 1})
    return s


def sources(*, ready: bool = True, control: ControlStatus | None = None) -> StatusSources:
    return StatusSources(
        mode="local hub",
        summary=summary,
        partitions=lambda: [
            PartitionStatus("0", True, 41, 50, 12.5),
            PartitionStatus("1", False, None, None, 0.0),
        ],
        ready=lambda: ready,
        control_plane=(lambda: control) if control is not None else None,
    )


def test_probes() -> None:
    client = Client(create_app(sources()))
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").status_code == 200
    client = Client(create_app(sources(ready=False)))
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.text == "not ready"


def test_metrics_are_prometheus_text_from_the_summary() -> None:
    client = Client(create_app(sources()))
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("graphtap_events_total", ())] == 12
    assert samples[("graphtap_findings_total", (("type", "credit_card_number"),))] == 4
    assert samples[("graphtap_dead_letters_total", (("reason", "malformed_event"),))] == 1
    assert samples[("graphtap_partition_lag", (("partition", "0"),))] == 9
    assert ("graphtap_partition_lag", (("partition", "1"),)) not in samples  # head unknown
    assert samples[("graphtap_partition_owned", (("partition", "1"),))] == 0
    assert samples[("graphtap_ready", ())] == 1


def test_status_page_without_a_control_plane_says_so() -> None:
    page = render_status_page(sources(), now=NOW)
    for section in ("subscriptions", "partitions", "findings", "dead-letters"):
        assert f"<section id='{section}'>" in page
    assert "No control plane is configured" in page
    assert "credit_card_number" in page
    assert "client_state_mismatch" in page
    assert "&lt;b&gt;odd&lt;/b&gt;" in page  # everything shown is escaped
    assert "<b>odd</b>" not in page
    for external in ("<script", "src=", "href=", "url(", "@import"):  # no external assets
        assert external not in page


def test_status_page_lists_subscriptions_and_their_expiry() -> None:
    control = ControlStatus(
        (
            Subscription(
                "/chats/getAllMessages", "sub-1", NOW + dt.timedelta(hours=30), "renewed", "active"
            ),
            Subscription("/teams/getAllMessages", None, None, "create failed", "missing"),
        ),
        errors=("2026-01-05T08:59:00Z reconcile: Graph said 403",),
    )
    page = render_status_page(sources(control=control), now=NOW)
    assert "No control plane" not in page
    assert "/chats/getAllMessages" in page
    assert "2026-01-06 15:00 UTC" in page
    assert "30 h 0 min" in page
    assert "create failed" in page
    assert "Graph said 403" in page
    client = Client(create_app(sources(control=control)))
    metrics = client.get("/metrics").text
    status = client.get("/status.json").json()
    assert 'graphtap_subscription_expiry_seconds{resource="/chats/getAllMessages"' in metrics
    assert status["subscriptions"][0]["id"] == "sub-1"
    assert status["control_plane"] == {
        "role": "leader",
        "instance": "web-1",
        "lifecycle_poisoned": [],
    }
    assert "web-1 is the control plane's <strong>leader</strong>" in page


def test_a_standby_says_so_and_who_renews() -> None:
    standby = ControlStatus((), role="standby", instance="web-2")
    page = render_status_page(sources(control=standby), now=NOW)
    assert "web-2 is the control plane's <strong>standby</strong>" in page
    assert "another instance renews the subscriptions" in page
    status = Client(create_app(sources(control=standby))).get("/status.json").json()
    assert status["control_plane"]["role"] == "standby"


def test_poisoned_lifecycle_events_are_listed_with_why() -> None:
    poisoned = PoisonedEvent("reauthorizationRequired", "sub-9", 5, "Graph said <403>")
    control = ControlStatus((), lifecycle_poisoned=(poisoned,))
    page = render_status_page(sources(control=control), now=NOW)
    assert "reauthorizationRequired for sub-9 after 5 attempts: Graph said &lt;403&gt;" in page
    status = Client(create_app(sources(control=control))).get("/status.json").json()
    assert status["control_plane"]["lifecycle_poisoned"] == [
        {
            "event": "reauthorizationRequired",
            "subscription_id": "sub-9",
            "attempts": 5,
            "last_error": "Graph said <403>",
        }
    ]


def test_status_page_and_json_show_resync_progress_without_content() -> None:
    job = JobProgress(
        id="3f2a",
        reason="subscription recreated",
        start=NOW - dt.timedelta(hours=2),
        end=NOW,
        state="running",
        units_total=5008,
        units_done=2411,
        units_failed=1,
        in_flight=4,
        messages=912,
        units_per_second=38.456,
        messages_per_second=7.5,
        last_error="user:u-9: 404 ResourceNotFound <gone>",
    )
    control = ControlStatus((), resync_jobs=(job,))
    page = render_status_page(sources(control=control), now=NOW)
    assert "<section id='resyncs'>" in page
    assert "2411 / 5008" in page
    assert "38.5" in page
    assert "&lt;gone&gt;" in page
    status = Client(create_app(sources(control=control))).get("/status.json").json()
    (shown,) = status["resyncs"]
    assert shown["units_done"] == 2411
    assert shown["units_total"] == 5008
    assert shown["units_per_second"] == 38.46
    assert shown["last_error"].startswith("user:u-9")
    idle = render_status_page(sources(control=ControlStatus(())), now=NOW)
    assert "No resync has run in this process." in idle


def test_status_json_has_no_subscriptions_without_a_control_plane() -> None:
    client = Client(create_app(sources()))
    status = client.get("/status.json").json()
    assert status["subscriptions"] is None
    assert status["partitions"][0] == {
        "partition": "0",
        "owned": True,
        "last_sequence": 41,
        "last_enqueued": 50,
        "lag": 9,
        "events_per_second": 12.5,
    }
