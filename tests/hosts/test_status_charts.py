"""The status page's time series, its inline SVG charts and its latest findings."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from types import SimpleNamespace

import httpx
import pytest

from graphtap.hosts import charts
from graphtap.hosts.commands.serve import _findings_source
from graphtap.hosts.findings import FindingRow, FindingsError
from graphtap.hosts.history import RecentFindings, StatusHistory
from graphtap.hosts.webapp import StatusSources, create_app, render_status_page
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.summary import Summary
from graphtap.processing.verdicts import Verdict

T0 = 1_767_603_600.0  # 2026-01-05 09:00 UTC
SVG = "{http://www.w3.org/2000/svg}"


def summary(notifications: int, **findings: int) -> Summary:
    s = Summary(notifications=notifications)
    s.findings_by_type = Counter(findings)
    return s


def partitions(*lags: int) -> list[PartitionStatus]:
    return [PartitionStatus(str(i), True, 100, 100 + lag, 0.0) for i, lag in enumerate(lags)]


def filled_history() -> StatusHistory:
    history = StatusHistory(interval=10, window=3600)
    history.sample(summary(0), partitions(0, 0), now=T0)
    history.sample(summary(500, password=2), partitions(40, 5), now=T0 + 10)
    history.sample(summary(700, password=3, iban=4), partitions(0, 0), now=T0 + 20)
    return history


def verdict(key: str, at: float, *findings: dict[str, object]) -> Verdict:
    return Verdict(
        key=key,
        tenant_id="t",
        subscription_id="s",
        change_type="created",
        resource="chats('c')/messages('m')",
        message_id="m",
        conversation_id="19:chat@thread.v2",
        version="1",
        sender_id="user-1",
        content="inspected",
        severity="high" if findings else "none",
        findings=tuple(findings),
        certificate_id="c",
        partition="0",
        offset=1,
        processed_at=at,
    )


def finding(kind: str, preview: str) -> dict[str, object]:
    return {
        "type": kind,
        "confidence": 85,
        "count": 1,
        "preview": preview,
        "positions": [3],
        "value_hash": "ab" * 32,
    }


def test_history_records_rates_lag_and_new_findings() -> None:
    samples = filled_history().samples()
    assert [s.notifications_per_second for s in samples] == [None, 50.0, 20.0]
    assert samples[1].lag == {"0": 40, "1": 5}
    assert samples[1].findings == {"password": 2}
    assert samples[2].findings == {"password": 1, "iban": 4}  # counted since the last one


def test_history_keeps_only_its_window() -> None:
    history = StatusHistory(interval=10, window=60)
    for i in range(20):
        history.sample(summary(i * 10), partitions(i), now=T0 + i * 10)
    kept = history.samples()
    assert len(kept) == 7  # 60 s of 10 s samples, both ends included
    assert kept[0].time == T0 + 130
    assert history.to_dict()["samples"][-1]["lag"] == {"0": 19}
    with pytest.raises(ValueError, match="interval must be positive"):
        StatusHistory(interval=0)


def test_history_samples_until_stopped() -> None:
    history = StatusHistory(interval=0.01, window=10)
    counter = iter(range(1000))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            history.run(lambda: summary(next(counter) * 5), lambda: partitions(1), stop)
        )
        # Until three samples are taken: a paused loop may bunch the timers, never skip them.
        async with asyncio.timeout(10):
            while len(history.samples()) < 3:
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(run())
    samples = history.samples()
    assert len(samples) >= 3
    assert all(s.notifications_per_second for s in samples[1:])


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314  (the app's own output, not untrusted input)


def test_line_chart_draws_points_inside_the_plot() -> None:
    history = filled_history()
    end = T0 + 20
    svg = re.search(
        r"<svg.*?</svg>", charts.notifications_chart(history.samples(), end=end, window=3600)
    )
    assert svg
    root = parse(svg.group(0))
    assert root.get("width") == str(charts.WIDTH)
    assert root.get("height") == str(charts.HEIGHT)
    line = root.find(f"{SVG}polyline")
    assert line is not None
    points = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
    assert len(points) == 2  # the first sample has no rate
    (x1, y1), (x2, y2) = points
    assert x2 == pytest.approx(charts.LEFT + charts.WIDTH - charts.LEFT - charts.RIGHT)
    assert x1 < x2
    assert y1 < y2  # 50/s is drawn higher than 20/s
    assert charts.TOP <= y1 <= charts.HEIGHT - charts.BOTTOM
    assert next(t.text for t in root.iter(f"{SVG}text")) == "50"  # the y axis' round top


def test_lag_chart_has_a_line_per_partition() -> None:
    html = charts.lag_chart(filled_history().samples(), end=T0 + 20, window=3600)
    root = parse(re.search(r"<svg.*?</svg>", html).group(0))  # type: ignore[union-attr]
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("data-series") for line in lines] == ["partition 0", "partition 1"]
    assert "partition 1</span>" not in html
    assert "lag 0" in html


def test_findings_chart_stacks_types_per_minute_and_escapes_names() -> None:
    history = StatusHistory(interval=10, window=3600)
    history.sample(summary(0), [], now=T0)
    history.sample(summary(10, **{"<b>x</b>": 2, "iban": 3}), [], now=T0 + 10)
    history.sample(summary(20, **{"<b>x</b>": 2, "iban": 5}), [], now=T0 + 130)
    html = charts.findings_chart(history.samples(), end=T0 + 130, window=3600)
    assert "<b>x</b>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    root = parse(re.search(r"<svg.*?</svg>", html).group(0))  # type: ignore[union-attr]
    bars = root.findall(f"{SVG}rect[@class='bar']")
    titles = sorted(bar.findtext(f"{SVG}title") or "" for bar in bars)
    assert titles == ["<b>x</b>: 2", "iban: 2", "iban: 3"]
    assert all(float(bar.get("height") or 0) > 0 for bar in bars)
    empty = charts.findings_chart([], end=T0, window=3600)
    assert "No findings in the last hour" in empty


def test_many_types_fold_into_other() -> None:
    history = StatusHistory(interval=10, window=3600)
    history.sample(summary(0), [], now=T0)
    history.sample(summary(1, **{f"type_{i}": i + 1 for i in range(9)}), [], now=T0 + 10)
    html = charts.findings_chart(history.samples(), end=T0 + 10, window=3600)
    assert "other types" in html
    assert html.count("class='swatch'") == charts.FINDING_TYPES_SHOWN + 1


def rows(*kinds: str) -> list[FindingRow]:
    return [
        FindingRow(
            T0 + i, "high", kind, 85, 1, f"****{i:04d}", "ab", "19:c", "u", "created", "m", "k"
        )
        for i, kind in enumerate(kinds)
    ]


def sources(latest: object = None, history: StatusHistory | None = None) -> StatusSources:
    return StatusSources(
        mode="local hub",
        summary=lambda: summary(3),
        partitions=lambda: partitions(0),
        ready=lambda: True,
        history=history,
        latest_findings=latest,  # type: ignore[arg-type]
    )


def get(app_sources: StatusSources, path: str) -> httpx.Response:
    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(app_sources))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(request())


def test_page_and_json_show_latest_findings_and_series() -> None:
    listed = rows("password", "<script>x</script>")
    app_sources = sources(lambda limit: listed[:limit], filled_history())
    page = get(app_sources, "/").text
    assert "<section id='latest-findings'>" in page
    assert "****0000" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<script>" not in page
    assert page.count("<svg class='chart'") == 3
    status = get(app_sources, "/status.json").json()
    assert [r["type"] for r in status["latest_findings"]] == ["password", "<script>x</script>"]
    assert status["series"]["interval_seconds"] == 10
    assert [s["notifications_per_second"] for s in status["series"]["samples"]] == [None, 50, 20]


def test_a_store_not_written_yet_is_said_not_raised() -> None:
    def missing(limit: int) -> Sequence[FindingRow]:
        raise FindingsError("verdict store v.sqlite does not exist: give the sink")

    page = render_status_page(sources(missing, None))
    assert "does not exist" in page
    assert "This process keeps no samples to draw." in page
    assert get(sources(missing, None), "/status.json").json()["latest_findings"] == []
    assert "This process has no findings to show." in render_status_page(sources())


def test_recent_findings_keeps_the_newest_masked_rows() -> None:
    recent = RecentFindings(size=3)
    recent.add([verdict("clean", T0)])
    assert recent.latest(10) == []
    recent.add([verdict("a", T0 + 1, finding("iban", "****1234"), finding("password", "****"))])
    recent.add([verdict("b", T0 + 2, finding("jwt", "****abcd"), finding("aws", "****WXYZ"))])
    latest = recent.latest(10)
    assert [r.type for r in latest] == ["aws", "jwt", "password"]  # bounded: 3, newest first
    assert latest[0].preview == "****WXYZ"
    assert latest[0].sender_id == "user-1"
    assert recent.latest(1) == latest[:1]


def test_azure_services_feed_the_ring_from_their_committer() -> None:
    committer = SimpleNamespace(observers=[])
    service = SimpleNamespace(processing=SimpleNamespace(committer=committer))
    latest = _findings_source(service)
    assert latest is not None
    assert len(committer.observers) == 1
    committer.observers[0]([verdict("a", T0, finding("iban", "****1234"))])
    assert [r.preview for r in latest(5)] == ["****1234"]
    local = SimpleNamespace(latest_findings=lambda limit: rows("iban")[:limit])
    reader = _findings_source(local)
    assert reader is not None
    assert reader(5)[0].type == "iban"
    assert _findings_source(SimpleNamespace()) is None
