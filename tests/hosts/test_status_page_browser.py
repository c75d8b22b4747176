"""The status page as a browser renders it: Debian's Chromium, headless, against `serve`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.hosts.conftest import ROOT, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts"
SECTIONS = ("totals", "subscriptions", "partitions", "findings", "dead-letters")

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
