"""The status page as a browser renders it: Debian's Chromium, headless, against `serve`."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from graphtap.hosts import charts
from tests.hosts.conftest import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts"
SECTIONS = (
    "charts",
    "totals",
    "latest-findings",
    "subscriptions",
    "partitions",
    "findings",
    "dead-letters",
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium); `make test` installs it "
    "with apt-get when apt is available",
)


def chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )


def test_status_page_renders_every_section_in_chromium(server: Server, tmp_path: Path) -> None:
    server.wait_until_drained()
    dom = chromium(tmp_path / "dom-profile", "--dump-dom", server.url + "/").stdout.decode()
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom
    assert "No control plane is configured" in dom
    assert '<td class="n">' in dom  # the tables were parsed as tables
    assert "dead letters" in dom.lower()

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    chromium(
        tmp_path / "shot-profile",
        "--window-size=1280,1800",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        server.url + "/",
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank frame
    shutil.rmtree(tmp_path / "shot-profile", ignore_errors=True)


# -- the charts, as pixels -------------------------------------------------------------------

Pixel = tuple[int, int, int]


def decode_png(data: bytes, *, max_rows: int) -> list[list[Pixel]]:
    """The first `max_rows` rows of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, compressed = 8, b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0)
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    raw = zlib.decompress(compressed)
    stride = width * channels
    previous = bytearray(stride)
    rows: list[list[Pixel]] = []
    for y in range(min(height, max_rows)):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + up) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif method == 4:
                corner = previous[i - channels] if i >= channels else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        rows.append([tuple(line[x : x + 3]) for x in range(0, stride, channels)])  # type: ignore[misc]
        previous = line
    return rows


def rgb(colour: str) -> Pixel:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def near(pixel: Pixel, colour: Pixel, tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_charts_are_drawn_in_chromium(server: Server, tmp_path: Path) -> None:
    server.wait_until_drained()
    deadline = time.monotonic() + 20
    while True:  # the drain's rate and two more samples, one a second (--chart-interval 1)
        series = server.status()["series"]
        assert isinstance(series, dict)
        rates = [s["notifications_per_second"] for s in series["samples"]]
        if any(rates) and len(rates) >= 4:
            break
        assert time.monotonic() < deadline, series
        time.sleep(0.3)

    dom = chromium(tmp_path / "dom-profile", "--dump-dom", server.url + "/").stdout.decode()
    svgs = re.findall(r'<svg class="chart"[^>]*width="(\d+)" height="(\d+)"', dom)
    assert svgs == [(str(charts.WIDTH), str(charts.HEIGHT))] * 3
    assert dom.count('<polyline class="series"') >= 1 + 4  # notifications, a lag per partition
    assert '<rect class="bar"' in dom  # findings by type
    assert "(values masked)" in dom
    assert re.search(r"<td>\*\*\*\*[^<]*</td>", dom)  # masked previews in the table

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-charts.png"
    screenshot.unlink(missing_ok=True)
    chromium(
        tmp_path / "shot-profile",
        "--window-size=1280,700",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--screenshot={screenshot}",
        server.url + "/",
    )
    rows = decode_png(screenshot.read_bytes(), max_rows=700)
    # The notifications chart's area (its colour at 15% over the white plot) exists nowhere
    # else on the page: where it is, the charts' plots are.
    blue = rgb(charts.PALETTE[0])
    r, g, b = (round(c * 0.15 + 255 * 0.85) for c in blue)
    area = (r, g, b)
    found = [(x, y) for y, row in enumerate(rows) for x, p in enumerate(row) if near(p, area, 3)]
    assert len(found) > 30, "the notifications chart drew no area"
    bottom = max(y for _, y in found)
    right = max(x for x, _ in found)
    top = bottom - (charts.HEIGHT - charts.TOP - charts.BOTTOM)
    assert any(near(p, blue) for row in rows[top : bottom + 1] for p in row[: right + 1])
    # Right of it, in the same band: the lag lines and the findings bars, in their colours.
    others = [rgb(c) for c in charts.PALETTE[1:]]
    coloured = sum(
        1
        for row in rows[top : bottom + 1]
        for p in row[right + 1 :]
        if any(near(p, colour) for colour in others)
    )
    assert coloured > 20, "the lag and findings charts drew nothing"
    shutil.rmtree(tmp_path / "shot-profile", ignore_errors=True)
