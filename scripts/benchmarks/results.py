"""`.bench/results.json`: the latest figures of every area, merged across runs."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / ".bench" / "results.json"


def record(area: str, figures: dict[str, Any]) -> Path:
    """Replace `area`'s figures in the results file, keeping the other areas'."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[area] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            # Which build: figures differ by a tenth between optimised and plain builds.
            "python_home": sys.base_prefix,
            "cpus": _cpus(),
        },
        **figures,
    }
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return RESULTS


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
