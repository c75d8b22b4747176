"""`make outputs`: the deployed stack's outputs become the flat file bootstrap reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.outputs import KEYS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "outputs.py"


def deployed_values(stack: Any) -> dict[str, Any]:
    """What Terraform would report after apply: references replaced by plausible values."""
    values = {}
    for name, output in stack.document["output"].items():
        value = output["value"]
        if isinstance(value, str) and value.startswith("${"):
            value = f"resolved-{name}"
        if value is not None:  # Terraform drops null outputs
            values[name] = value
    return values


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.parametrize("form", ["terraform", "cdktf"])
def test_outputs_file_from_either_form(tmp_path: Path, synthesized: Any, form: str) -> None:
    values = deployed_values(synthesized.stacks["dev"])
    raw = (
        {name: {"value": v, "type": "string", "sensitive": False} for name, v in values.items()}
        if form == "terraform"
        else {"dev": values}
    )
    source = tmp_path / "raw.json"
    source.write_text(json.dumps(raw))
    result = run("dev", "--from", str(source), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "out" / "dev.json").read_text())
    assert saved["function_app_name"] is None
    assert saved["notification_partitions"] == 2
    assert saved["tenant_id"] == "resolved-tenant_id"
    assert saved["notification_url"].startswith("EventHub:https://evhns-gtap-dev-weu.")
    assert list(saved) == list(KEYS)


def test_missing_outputs_are_an_error_not_a_partial_file(tmp_path: Path) -> None:
    source = tmp_path / "raw.json"
    source.write_text(json.dumps({"environment": {"value": "dev"}}))
    result = run("dev", "--from", str(source), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "lack tenant_id" in result.stderr
    assert not (tmp_path / "out").exists()


def test_outputs_of_another_environment_are_refused(tmp_path: Path, synthesized: Any) -> None:
    source = tmp_path / "raw.json"
    source.write_text(json.dumps({"dev": deployed_values(synthesized.stacks["prod"])}))
    result = run("dev", "--from", str(source), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "of 'prod', not 'dev'" in result.stderr


def test_an_undeployed_stack_says_what_to_do(tmp_path: Path) -> None:
    result = run("nowhere", "--out-dir", str(tmp_path))
    assert result.returncode == 1
    assert "cdktf deploy nowhere" in result.stderr
