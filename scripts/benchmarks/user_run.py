"""`graphtap process` as a user runs it: one worker against one worker per core, wall time.

The processing area times the pipeline from its first batch to its last commit; a user waits
for the whole command: the interpreter and its imports, the keys, the worker processes and
their pipelines, reading the JSONL file, writing the SQLite sink, and shutting down. Here
`graphtap keys create` and `graphtap simulate` make 20,000 rich notifications (RSA-2048) once,
then `graphtap process --source jsonl:... --sink sqlite:...` runs as a subprocess with
`--workers 1` and with `--workers <cores>`, in interleaved rounds (the order alternates, so
neither count always runs second), each round's speedup from its own pair, judged on the median.

Each run also reports the processor's own clock (`--json`'s `seconds`), so the table splits
the wall time into the pipeline's part and what surrounds it (start-up and shutdown).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

NOTIFICATIONS = 20_000
ROUNDS = 7
CLIENT_STATE = "bench-client-state"
TARGET_SPEEDUP = 1.8
GRAPHTAP = Path(sys.executable).with_name("graphtap")


@dataclass(frozen=True)
class Run:
    workers: int
    wall: float  # seconds, the command from exec to exit
    processing: float  # seconds on the processor's own clock
    cpu: float  # seconds of CPU, the command and its worker processes
    notifications: int

    @property
    def around(self) -> float:
        """Start-up and shutdown: the wall time outside the processor's clock."""
        return self.wall - self.processing


def run(console: Console) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    pairs: list[tuple[Run, Run]] = []
    with tempfile.TemporaryDirectory(prefix="graphtap-bench-cli-") as scratch:
        root = Path(scratch)
        events = prepare(root, console, count=NOTIFICATIONS)
        for index in range(ROUNDS):
            order = (1, cores) if index % 2 == 0 else (cores, 1)
            runs = {w: process(root, events, workers=w, run=f"{w}-{index}") for w in order}
            pairs.append((runs[1], runs[cores]))
            console.print(
                f"round {index + 1}/{ROUNDS}: {runs[1].wall:.2f} s / {runs[cores].wall:.2f} s"
                f" = {runs[1].wall / runs[cores].wall:.2f}x"
            )
    speedups = [one.wall / many.wall for one, many in pairs]
    pipeline_speedups = [one.processing / many.processing for one, many in pairs]
    figures = {
        "notifications": pairs[0][0].notifications,
        "cores": cores,
        "rounds": [
            {"one": asdict(one), "all": asdict(many), "speedup": round(one.wall / many.wall, 3)}
            for one, many in pairs
        ],
        "wall_seconds": {
            "one": round(statistics.median(one.wall for one, _ in pairs), 3),
            "all": round(statistics.median(many.wall for _, many in pairs), 3),
        },
        "around_seconds": {
            "one": round(statistics.median(one.around for one, _ in pairs), 3),
            "all": round(statistics.median(many.around for _, many in pairs), 3),
        },
        "cpu_seconds": {
            "one": round(statistics.median(one.cpu for one, _ in pairs), 3),
            "all": round(statistics.median(many.cpu for _, many in pairs), 3),
        },
        "speedup": round(statistics.median(speedups), 3),
        "processor_clock_speedup": round(statistics.median(pipeline_speedups), 3),
        "targets": {"speedup": TARGET_SPEEDUP},
    }
    console.print(_table(pairs, cores, figures))
    return figures


def prepare(root: Path, console: Console, *, count: int) -> Path:
    """A key, a finding hash key and `count` simulated rich notifications in a JSONL file,
    made with the commands a user would run."""
    console.print(f"simulating {count:,} rich notifications (RSA-2048) into a JSONL file...")
    _graphtap("keys", "create", "--out", str(root / "keys"), "--id", "bench")
    (root / "hash.key").write_text(secrets.token_hex(32))
    events = root / "events.jsonl"
    _graphtap(
        "simulate",
        "--cert",
        str(root / "keys" / "bench.cert.pem"),
        "--cert-id",
        "bench",
        "--client-state",
        CLIENT_STATE,
        "--count",
        str(count),
        "--lifecycle-share",
        "0",
        "--seed",
        "3",
        "--out",
        str(events),
    )
    return events


def process(root: Path, events: Path, *, workers: int, run: str) -> Run:
    """One `graphtap process` from exec to exit, into a fresh SQLite sink."""
    os.sync()  # the previous run's writes go to disk now, not during this one
    cpu = _children_cpu()
    started = time.perf_counter()
    output = _graphtap(
        "process",
        "--source",
        f"jsonl:{events}",
        "--keys",
        str(root / "keys"),
        "--client-state",
        CLIENT_STATE,
        "--hash-key-file",
        str(root / "hash.key"),
        "--sink",
        f"sqlite:{root / f'verdicts-{run}.sqlite'}",
        "--workers",
        str(workers),
        "--json",
    )
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu
    summary = json.loads(output)
    return Run(workers, round(wall, 3), summary["seconds"], round(cpu, 3), summary["notifications"])


def _children_cpu() -> float:
    """CPU seconds of every finished child, theirs included (a worker is its command's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _graphtap(*args: str) -> str:
    done = subprocess.run([str(GRAPHTAP), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"graphtap {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def _table(pairs: list[tuple[Run, Run]], cores: int, figures: dict[str, Any]) -> Table:
    table = Table(
        title=f"graphtap process, {figures['notifications']:,} notifications from JSONL, "
        "wall seconds (processor clock + start-up and shutdown)"
    )
    columns = ("round", "--workers 1", f"--workers {cores}", "speedup", "processor clock", "CPU s")
    for column in columns:
        table.add_column(column, justify="right")
    for index, (one, many) in enumerate(pairs, 1):
        table.add_row(
            str(index),
            f"{one.wall:.2f} ({one.processing:.2f} + {one.around:.2f})",
            f"{many.wall:.2f} ({many.processing:.2f} + {many.around:.2f})",
            f"{one.wall / many.wall:.2f}x",
            f"{one.processing / many.processing:.2f}x",
            f"{one.cpu:.1f} / {many.cpu:.1f}",
        )
    table.add_section()
    table.add_row(
        "median",
        f"{figures['wall_seconds']['one']:.2f}",
        f"{figures['wall_seconds']['all']:.2f}",
        f"[bold]{figures['speedup']:.2f}x",
        f"{figures['processor_clock_speedup']:.2f}x",
        f"{figures['cpu_seconds']['one']:.1f} / {figures['cpu_seconds']['all']:.1f}",
    )
    table.add_row("target", "", "", f">= {TARGET_SPEEDUP}x", "", "")
    return table
