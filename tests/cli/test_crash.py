"""SIGKILL the processor mid-run, restart it: every notification ends with exactly one verdict."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.certificates import load_certificate

from .conftest import GRAPHTAP

CLIENT_STATE = "crash-client-state"


def _verdicts(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table is not created yet


def test_kill_and_restart_loses_and_repeats_nothing(cli_keys: Path, tmp_path: Path) -> None:
    hub_dir = tmp_path / "hub"
    events = list(
        simulate(
            SimulationSettings(count=4000, seed=11, fault_share=0.01),
            certificate=load_certificate(cli_keys / "cli-cert.cert.pem"),
            certificate_id="cli-cert",
            client_state=CLIENT_STATE,
        )
    )
    with LocalHub(hub_dir, partitions=4) as hub:
        hub.send([e.body for e in events])
    expected_verdicts = sum(e.changes for e in events)
    expected_dead = sum(len(e.faults) for e in events)
    database = tmp_path / "verdicts.sqlite"
    command = [
        str(GRAPHTAP),
        "process",
        "--source",
        f"local:{hub_dir}",
        "--keys",
        str(cli_keys),
        "--client-state",
        CLIENT_STATE,
        "--sink",
        f"sqlite:{database}",
        "--batch-size",
        "16",
    ]

    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _verdicts(database) < expected_verdicts // 4 and time.monotonic() < deadline:
        assert victim.poll() is None, "the processor finished before it could be killed"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    at_kill = _verdicts(database)
    assert 0 < at_kill < expected_verdicts, "the kill must land mid-run"

    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0, finished.stderr
    with sqlite3.connect(database) as db:
        verdicts = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT verdict_key) FROM verdicts"
        ).fetchone()
        dead = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    assert verdicts == (expected_verdicts, expected_verdicts)
    assert dead == expected_dead
    with LocalHub(hub_dir) as hub:
        assert all(p.lag == 0 for p in hub.partitions(DEFAULT_CONSUMER_GROUP))
