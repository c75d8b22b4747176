"""Synth speed: wall time of `python -m stacks` synthesizing every shipped environment.

Each run is a fresh process (as `make synth` and the cdktf CLI run it), so the figure includes
importing the bindings. The first run warms the jsii cache and the OS page cache and is
reported separately.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
TARGET_SECONDS = 6.0
RUNS = 3


def _synth_once(outdir: Path) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the synth process and its node child."""
    env = {
        **os.environ,
        "CDKTF_OUTDIR": str(outdir),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [str(PYTHON if PYTHON.exists() else sys.executable), "-m", "stacks"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(tmp) / "cdktf.out"
        first, _ = _synth_once(outdir)
        console.print(f"first synth (cold caches): {first:.2f} s")
        times, cpu_times = [], []
        for index in range(RUNS):
            wall, cpu = _synth_once(outdir)
            times.append(wall)
            cpu_times.append(cpu)
            console.print(f"synth run {index + 1}/{RUNS}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        stacks = sorted(p.name for p in (outdir / "stacks").iterdir())
    median = statistics.median(times)
    # Other work on the machine stretches wall time; the load average says how much.
    load = os.getloadavg()[0]
    verdict = "[green]within" if median <= TARGET_SECONDS else "[red]over"
    console.print(
        f"synth of {len(stacks)} stacks ({', '.join(stacks)}): median {median:.2f} s, "
        f"{verdict} the {TARGET_SECONDS:.0f} s target (load average {load:.2f})"
    )
    return {
        "stacks": stacks,
        "first_run_seconds": round(first, 3),
        "runs_seconds": [round(t, 3) for t in times],
        "median_seconds": round(median, 3),
        "cpu_seconds": [round(t, 3) for t in cpu_times],
        "load_average_1m": round(load, 2),
        "target_seconds": TARGET_SECONDS,
        "within_target": median <= TARGET_SECONDS,
    }
