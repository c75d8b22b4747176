"""`graphtap demo` keeps its keys and secrets and ends with the command that serves its status
page; that command works as printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .conftest import GRAPHTAP

CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("GRAPHTAP_", "APPLICATIONINSIGHTS_", "WEBSITE"))
}


def demo(cwd: Path, count: int) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(GRAPHTAP), "demo", "--count", str(count), "--workers", "1"],
        cwd=cwd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_demo_prints_a_status_page_command_that_works(tmp_path: Path) -> None:
    first = demo(tmp_path, 300)
    command = first.stdout.strip().splitlines()[-1]
    workdir = tmp_path / ".demo"
    client_state = workdir / "client-state"
    hash_key = workdir / "finding-hash.key"
    for secret in (client_state, hash_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        value = secret.read_text().strip()
        assert len(value) >= 32
        assert value not in first.stdout
        assert value not in first.stderr
    program, verb = shlex.split(command)[:2]
    assert (Path(program).name, verb) == ("graphtap", "serve")
    assert "--client-state-file" in command
    kept = {p: p.read_bytes() for p in (client_state, hash_key, *(workdir / "keys").iterdir())}

    second = demo(tmp_path, 120)  # a new hub and store; the same keys and secrets
    assert second.stdout.strip().splitlines()[-1] == command
    assert {p: p.read_bytes() for p in kept} == kept

    port = free_port()
    arguments = [*shlex.split(command), "--port", str(port)]  # as printed, from where it ran
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            arguments, cwd=tmp_path, env=CLEAN_ENV, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        code, body = get(f"http://127.0.0.1:{port}/status.json")
        assert code == 200
        status = json.loads(body)
        latest = status["latest_findings"]
        assert latest  # the demo's store, read by the status page
        assert all(row["preview"].startswith("****") for row in latest)
        assert [p["lag"] for p in status["partitions"]] == [0, 0, 0, 0]  # the demo drained it
        code, page = get(f"http://127.0.0.1:{port}/")
        assert code == 200
        assert "<section id='latest-findings'>" in page
        assert latest[0]["preview"] in page
        for secret in (client_state, hash_key):
            assert secret.read_text().strip() not in page
            assert secret.read_text().strip() not in " ".join(arguments)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert client_state.read_text().strip() not in log.read_text()
