"""`make bench`: every measured figure of the project, side by side in one run.

Each area contributes a module in `scripts/benchmarks/` with `run(console) -> dict`;
the figures are printed as they are measured and merged into `.bench/results.json`.
Select areas with arguments, e.g. `python scripts/bench.py processing`.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks.results import record

AREAS = ("processing", "user_run", "inspection", "synth", "reconcile", "eventhubs", "latency")


def main(argv: list[str]) -> int:
    console = Console()
    selected = argv or list(AREAS)
    unknown = sorted(set(selected) - set(AREAS))
    if unknown:
        console.print(
            f"[red]unknown bench area(s): {', '.join(unknown)}; known: {', '.join(AREAS)}"
        )
        return 2
    console.print(f"Python {platform.python_version()} from {sys.base_prefix}")
    for area in selected:
        try:
            module = importlib.import_module(f"benchmarks.{area}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmarks.{area}":
                raise
            console.print(f"[yellow]{area}: no benchmark in this checkout")
            continue
        console.rule(area)
        figures = module.run(console)
        console.print(f"{area}: figures written to {record(area, figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
