"""`graphtap serve` as a real process on a local hub full of simulated Graph traffic."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphtap.localhub import LocalHub
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import create_certificate, load_certificate
from tests.eventhubs.conftest import (  # noqa: F401  (the Event Hubs fixtures, shared)
    certificate,
    client_state,
    expected,
    hubs,
    make_instance,
    pipeline_settings,
    traffic,
)

ROOT = Path(__file__).resolve().parents[2]
AZURE_SETTINGS = ("GRAPHTAP_EVENTHUB_NAMESPACE", "APPLICATIONINSIGHTS_CONNECTION_STRING")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    events: int
    log: Path
    client_state: str

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def status(self) -> dict[str, object]:
        code, body = self.get("/status.json")
        assert code == 200, body
        return dict(json.loads(body))

    def wait_until_drained(self, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            summary = status["summary"]
            assert isinstance(summary, dict)
            if summary["events"] == self.events:
                return status
            time.sleep(0.1)
        raise AssertionError(f"not drained in {timeout}s: {self.log.read_text()[-2000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only read from it."""
    yield from run_server(tmp_path_factory.mktemp("serve"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, for tests that stop it."""
    yield from run_server(tmp_path)


def run_server(workdir: Path) -> Iterator[Server]:
    keys = create_certificate(workdir / "keys", certificate_id="serve-test")
    state = secrets.token_urlsafe(24)
    events = simulate(
        SimulationSettings(count=300, seed=5, fault_share=0.05, lifecycle_share=0.01),
        certificate=load_certificate(keys.certificate_path),
        certificate_id=keys.certificate_id,
        client_state=state,
    )
    with LocalHub(workdir / "hub", partitions=4) as hub:
        written = write_events(events, hub=hub)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in AZURE_SETTINGS}
    env["GRAPHTAP_FINDING_HASH_KEY"] = secrets.token_hex(32)
    env["GRAPHTAP_CLIENT_STATES"] = state  # not on the command line: it is a secret
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "graphtap",
                "--log-level",
                "INFO",
                "serve",
                "--source",
                f"local:{workdir / 'hub'}",
                "--keys",
                str(workdir / "keys"),
                "--sink",
                f"sqlite:{workdir / 'verdicts.sqlite'}",
                "--port",
                str(port),
                "--chart-interval",
                "1",  # the charts have lines within seconds
            ],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(
        f"http://127.0.0.1:{port}", process, workdir, int(written["events"]), log, state
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            # Live first, then ready once the processor thread has opened its stores.
            if server.get("/healthz")[0] == 200 and server.get("/readyz")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"graphtap serve did not start: {log.read_text()}")
        time.sleep(0.1)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
