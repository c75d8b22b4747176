"""Golden snapshot per environment: any change to a stack shows up as a reviewed diff.

`make snapshot` refreshes them (GRAPHTAP_UPDATE_SNAPSHOTS=1)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from stacks.config import load_all

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("GRAPHTAP_UPDATE_SNAPSHOTS") == "1"


@pytest.mark.parametrize("environment", [config.name for config in load_all()])
def test_stack_matches_its_snapshot(synthesized: Any, environment: str) -> None:
    current = json.dumps(json.loads(synthesized.stacks[environment].testing_synth), indent=2) + "\n"
    path = SNAPSHOTS / f"{environment}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(current)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make snapshot` and review the new file")
    assert current == path.read_text(), (
        f"the {environment} stack differs from {path}; if the change is intended, run "
        "`make snapshot` and review the diff"
    )
