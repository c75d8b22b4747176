"""Small inline SVG charts for the status page, drawn on the server: no script, no assets.

Each chart spans the time since the first sample, up to the history's window (the last
hour), ending now; a gap in the samples (a pause) stays a gap in time.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from graphtap.hosts.history import Sample

WIDTH = 360
HEIGHT = 120
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 18
#: One colour per series; the first is the notifications line.
PALETTE = ("#0366d6", "#d73a49", "#28a745", "#6f42c1", "#e36209", "#005cc5", "#b08800")
OTHER_COLOUR = "#959da5"
FINDING_TYPES_SHOWN = 6
#: Columns of the findings chart across its span (one a minute over an hour).
BUCKETS = 60
#: The shortest span drawn, so a process that just started does not draw one sample wide.
MIN_SPAN_SECONDS = 60.0


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: tuple[tuple[float, float], ...]  # (epoch seconds, value)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ceiling(value: float) -> float:
    """A round upper bound for the y axis: 1, 2, 5 times a power of ten."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


class _Frame:
    """The plot area and its axes for a window ending `end` and a y range [0, top]."""

    def __init__(self, end: float, window: float, top: float, label: str) -> None:
        self.start, self.end, self.top, self.label = end - window, end, top, label
        self.width = WIDTH - LEFT - RIGHT
        self.height = HEIGHT - TOP - BOTTOM

    def x(self, moment: float) -> float:
        return LEFT + (moment - self.start) / (self.end - self.start) * self.width

    def y(self, value: float) -> float:
        return TOP + self.height - min(value, self.top) / self.top * self.height

    def open(self) -> str:
        bottom = TOP + self.height
        return (
            f"<svg class='chart' role='img' aria-label='{_e(self.label)}' width='{WIDTH}' "
            f"height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' xmlns='http://www.w3.org/2000/svg'>"
            f"<rect class='plot' x='{LEFT}' y='{TOP}' width='{self.width}' height='{self.height}'"
            " fill='#ffffff' stroke='#d1d5da'/>"
            f"<line x1='{LEFT}' y1='{TOP + self.height / 2:.1f}' x2='{LEFT + self.width}' "
            f"y2='{TOP + self.height / 2:.1f}' stroke='#eaecef'/>"
            f"<text x='{LEFT - 4}' y='{TOP + 8}' text-anchor='end'>{_e(_number(self.top))}</text>"
            f"<text x='{LEFT - 4}' y='{bottom}' text-anchor='end'>0</text>"
            f"<text x='{LEFT}' y='{HEIGHT - 4}'>-{_e(_ago(self.end - self.start))}</text>"
            f"<text x='{LEFT + self.width}' y='{HEIGHT - 4}' text-anchor='end'>now</text>"
        )


def _ago(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def span(samples: Sequence[Sample], *, end: float, window: float) -> float:
    """What a chart spans: since the first sample (at least a minute), at most `window`."""
    if not samples:
        return window
    return min(window, max(end - samples[0].time, MIN_SPAN_SECONDS))


def line_chart(label: str, series: Sequence[Series], *, end: float, window: float) -> str:
    """Lines over the window; a lone point is a dot, so the first sample already shows."""
    peak = max((v for s in series for _, v in s.points), default=0.0)
    frame = _Frame(end, window, _ceiling(peak), label)
    parts = [frame.open()]
    for s in series:
        points = [(frame.x(t), frame.y(v)) for t, v in s.points if t >= frame.start]
        if not points:
            continue
        if len(series) == 1 and len(points) > 1:
            bottom = TOP + frame.height
            area = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f"<polygon class='area' points='{points[0][0]:.1f},{bottom} {area} "
                f"{points[-1][0]:.1f},{bottom}' fill='{s.colour}' fill-opacity='0.15'/>"
            )
        if len(points) > 1:
            line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f"<polyline class='series' data-series='{_e(s.name)}' points='{line}' "
                f"fill='none' stroke='{s.colour}' stroke-width='2' stroke-linejoin='round'/>"
            )
        x, y = points[-1]
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{s.colour}'/>")
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(
    label: str,
    buckets: Sequence[tuple[float, dict[str, int]]],
    colours: dict[str, str],
    *,
    end: float,
    window: float,
    bucket: float,
) -> str:
    """One column per bucket (its start time), its types stacked in `colours`' order."""
    peak = max((sum(counts.values()) for _, counts in buckets), default=0)
    frame = _Frame(end, window, _ceiling(peak), label)
    width = max(1.0, frame.width * bucket / window - 1)
    parts = [frame.open()]
    for start, counts in buckets:
        x = frame.x(start)
        if x < LEFT:
            continue
        base = 0
        for kind, colour in colours.items():
            count = counts.get(kind, 0)
            if not count:
                continue
            top, bottom = frame.y(base + count), frame.y(base)
            parts.append(
                f"<rect class='bar' x='{x:.1f}' y='{top:.1f}' width='{width:.1f}' "
                f"height='{max(bottom - top, 1):.1f}' fill='{colour}'><title>"
                f"{_e(kind)}: {count}</title></rect>"
            )
            base += count
    parts.append("</svg>")
    return "".join(parts)


def legend(entries: Sequence[tuple[str, str, str]]) -> str:
    """(colour, name, value) swatches under a chart."""
    items = "".join(
        f"<li><span class='swatch' style='background:{colour}'></span>{_e(name)}"
        f" <span class='muted'>{_e(value)}</span></li>"
        for colour, name, value in entries
    )
    return f"<ul class='legend'>{items}</ul>"


# -- the three charts ----------------------------------------------------------------------


def notifications_chart(samples: Sequence[Sample], *, end: float, window: float) -> str:
    points = tuple(
        (s.time, s.notifications_per_second)
        for s in samples
        if s.notifications_per_second is not None
    )
    chart = line_chart(
        "notifications per second",
        [Series("notifications/s", PALETTE[0], points)],
        end=end,
        window=window,
    )
    now = points[-1][1] if points else 0.0
    peak = max((v for _, v in points), default=0.0)
    return chart + legend([(PALETTE[0], "notifications/s", f"now {now:,.1f}, peak {peak:,.1f}")])


def lag_chart(samples: Sequence[Sample], *, end: float, window: float) -> str:
    partitions = sorted({p for s in samples for p in s.lag}, key=lambda p: (len(p), p))
    series = [
        Series(
            f"partition {p}",
            PALETTE[i % len(PALETTE)],
            tuple((s.time, float(s.lag[p])) for s in samples if p in s.lag),
        )
        for i, p in enumerate(partitions)
    ]
    chart = line_chart("lag per partition (events)", series, end=end, window=window)
    latest = samples[-1].lag if samples else {}
    return chart + legend(
        [
            (s.colour, s.name, f"lag {latest.get(p, '-')}")
            for s, p in zip(series, partitions, strict=True)
        ]
    )


def findings_chart(samples: Sequence[Sample], *, end: float, window: float) -> str:
    totals: Counter[str] = Counter()
    for s in samples:
        totals.update(s.findings)
    shown = [kind for kind, _ in totals.most_common(FINDING_TYPES_SHOWN)]
    colours = {kind: PALETTE[(i + 1) % len(PALETTE)] for i, kind in enumerate(shown)}
    if len(totals) > len(shown):
        colours["other"] = OTHER_COLOUR
    start = end - window
    size = window / BUCKETS
    buckets: dict[int, Counter[str]] = {}
    for s in samples:
        if s.time < start:
            continue
        index = min(int((s.time - start) // size), BUCKETS - 1)
        bucket = buckets.setdefault(index, Counter())
        for kind, count in s.findings.items():
            bucket[kind if kind in colours else "other"] += count
    chart = stacked_bars(
        "findings by type",
        [(start + i * size, dict(c)) for i, c in sorted(buckets.items())],
        colours,
        end=end,
        window=window,
        bucket=size,
    )
    if not totals:
        return chart + "<p class='muted'>No findings in the last hour.</p>"
    entries = [
        (colour, kind, f"{totals[kind]:,}") for kind, colour in colours.items() if kind != "other"
    ]
    if "other" in colours:
        rest = sum(totals.values()) - sum(totals[k] for k in shown)
        entries.append((OTHER_COLOUR, "other types", f"{rest:,}"))
    return chart + legend(entries)
