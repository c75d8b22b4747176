"""Throughput of the whole local path against the floor no implementation beats.

20,000 simulated rich notifications (2048-bit key) go through the local hub, the pipeline
and the SQLite sink, once with one worker and once with one worker per core. In the same
run, on the same key, the bare RSA-OAEP unwrap rate is measured on one core, just before
and just after the one-worker run: each notification needs one unwrap, so one worker can at
best reach that rate.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from graphtap.inspection import InspectionSettings, Policy
from graphtap.localhub import LocalHub
from graphtap.notifications.crypto import OAEP_SHA1
from graphtap.notifications.keyring import KeyRing
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import Processor, ProcessorOptions, Summary
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.certificates import create_certificate, load_certificate
from graphtap.subscriptions.lifecycle import LifecycleQueue

NOTIFICATIONS = 20_000
CLIENT_STATE = "bench-client-state"
TARGET_ONE_WORKER_OF_RSA = 0.8
TARGET_ALL_CORES_OF_ONE = 1.8


def run(console: Console) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="graphtap-bench-") as scratch:
        root = Path(scratch)
        bodies, settings = fill_local_hub(
            root, console, count=NOTIFICATIONS, seed=1, partitions=max(4, cores)
        )
        # The floor is measured right before and right after the one-worker run: a shared
        # machine's speed drifts, and the mean is what that run was up against.
        rsa_before = _rsa_unwrap_rate(root / "keys", bodies)
        one = process_local_hub(root, settings, workers=1, run="one")
        rsa_after = _rsa_unwrap_rate(root / "keys", bodies)
        many = process_local_hub(root, settings, workers=cores, run="all")
    rsa_rate = (rsa_before + rsa_after) / 2

    one_rate = one.notifications_per_second
    many_rate = many.notifications_per_second
    figures = {
        "notifications": one.notifications,
        "rsa_unwrap_per_second_one_core": round(rsa_rate, 1),
        "rsa_unwrap_per_second_before_and_after": [round(rsa_before, 1), round(rsa_after, 1)],
        "one_worker_notifications_per_second": round(one_rate, 1),
        "all_cores_notifications_per_second": round(many_rate, 1),
        "cores": cores,
        "one_worker_share_of_rsa_rate": round(one_rate / rsa_rate, 3),
        "all_cores_speedup_over_one_worker": round(many_rate / one_rate, 3),
        "targets": {
            "one_worker_share_of_rsa_rate": TARGET_ONE_WORKER_OF_RSA,
            "all_cores_speedup_over_one_worker": TARGET_ALL_CORES_OF_ONE,
        },
    }
    table = Table(title=f"local path, {one.notifications:,} notifications, RSA-2048")
    for column in ("measure", "per second", "ratio", "target"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    table.add_row("bare RSA-OAEP unwrap, one core", f"{rsa_rate:,.0f}", "1.00", "")
    table.add_row(
        "whole path, one worker",
        f"{one_rate:,.0f}",
        f"{figures['one_worker_share_of_rsa_rate']:.2f} of RSA",
        f">= {TARGET_ONE_WORKER_OF_RSA}",
    )
    table.add_row(
        f"whole path, {cores} workers",
        f"{many_rate:,.0f}",
        f"{figures['all_cores_speedup_over_one_worker']:.2f}x one worker",
        f">= {TARGET_ALL_CORES_OF_ONE}",
    )
    console.print(table)
    return figures


def _rsa_unwrap_rate(keys: Path, bodies: list[bytes]) -> float:
    """Unwrap the benchmark's own dataKeys with the same key: the per-notification floor."""
    key = KeyRing.load([keys]).entries()[0].private_key
    wrapped = [
        base64.b64decode(item["encryptedContent"]["dataKey"])
        for body in bodies[:6000]
        for item in json.loads(body)["value"]
        if "encryptedContent" in item
    ][:5000]
    started = time.perf_counter()
    for data_key in wrapped:
        key.decrypt(data_key, OAEP_SHA1)
    return len(wrapped) / (time.perf_counter() - started)


def fill_local_hub(
    root: Path, console: Console, *, count: int, seed: int, partitions: int
) -> tuple[list[bytes], PipelineSettings]:
    """A certificate in `root/keys`, `count` simulated rich notifications in `root/hub`, and
    the pipeline settings that decrypt them."""
    files = create_certificate(root / "keys", certificate_id="bench", bits=2048)
    console.print(f"simulating {count:,} rich notifications (RSA-2048)...")
    bodies = [
        e.body
        for e in simulate(
            SimulationSettings(count=count, seed=seed, lifecycle_share=0.0),
            certificate=load_certificate(files.certificate_path),
            certificate_id="bench",
            client_state=CLIENT_STATE,
        )
    ]
    with LocalHub(root / "hub", partitions=partitions) as hub:
        hub.send(bodies)
    settings = PipelineSettings(
        key_paths=(root / "keys",),
        client_states=(CLIENT_STATE,),
        inspection=InspectionSettings(hash_key=secrets.token_bytes(32), policy=Policy.default()),
    )
    return bodies, settings


def process_local_hub(root: Path, settings: PipelineSettings, *, workers: int, run: str) -> Summary:
    """Drain `root/hub` from the start (a consumer group of this run's own) into SQLite."""
    source = LocalHubSource(root / "hub", consumer_group=f"bench-{run}")
    store = SqliteStore(root / f"verdicts-{run}.sqlite")
    lifecycle = LifecycleQueue(root / f"lifecycle-{run}.sqlite")
    try:
        return Processor(
            source=source,
            sink=store,
            dead_letters=store,
            lifecycle=lifecycle,
            settings=settings,
            options=ProcessorOptions(workers=workers),
        ).run()
    finally:
        source.close()
        store.close()
        lifecycle.close()
