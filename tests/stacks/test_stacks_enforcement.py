"""Least privilege, opt in: the runtime identity may set a message's policyViolation only in an
environment whose policy.toml says `[enforcement] mode = "enforce"`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graphtap.inspection import PolicyError
from stacks.config import ENVIRONMENTS_DIR, load
from stacks.constructs.graph_permissions import ENFORCEMENT_PERMISSIONS, enforcement_permissions
from tests.stacks.conftest import SynthesizedStack


def environment(tmp_path: Path, mode: str | None) -> Path:
    """dev's folder, its policy's enforcement mode set to `mode` (None: no policy file)."""
    folder = tmp_path / "dev"
    folder.mkdir()
    shutil.copy(ENVIRONMENTS_DIR / "dev" / "stack.toml", folder / "stack.toml")
    if mode is not None:
        text = (ENVIRONMENTS_DIR / "dev" / "policy.toml").read_text()
        assert 'mode = "dry_run"' in text
        (folder / "policy.toml").write_text(text.replace('mode = "dry_run"', f'mode = "{mode}"'))
    return folder / "stack.toml"


@pytest.mark.parametrize(
    ("mode", "granted"),
    [(None, ()), ("report", ()), ("dry_run", ()), ("enforce", ENFORCEMENT_PERMISSIONS)],
)
def test_only_an_enforcing_policy_asks_for_the_permissions(
    tmp_path: Path, mode: str | None, granted: tuple[str, ...]
) -> None:
    assert enforcement_permissions(environment(tmp_path, mode)) == granted


def test_an_invalid_policy_fails_the_synth_naming_file_and_key(tmp_path: Path) -> None:
    stack_file = environment(tmp_path, "enforce_everything")
    with pytest.raises(PolicyError, match=r"policy\.toml \[enforcement\] mode"):
        enforcement_permissions(stack_file)


def test_enforcing_where_only_the_function_app_processes_is_refused(tmp_path: Path) -> None:
    stack_file = environment(tmp_path, "enforce")
    with pytest.raises(ValueError, match="needs the web app") as refused:
        enforcement_permissions(stack_file, processor="function")
    assert str(stack_file) in str(refused.value)
    assert enforcement_permissions(stack_file, processor="both") == ENFORCEMENT_PERMISSIONS


def graph_roles(stack: SynthesizedStack) -> set[str]:
    prefix = "app_role_ids["
    return {
        a["app_role_id"].split(prefix)[1].split('"')[1]
        for a in stack.resources("azuread_app_role_assignment").values()
        if prefix in a["app_role_id"] and "microsoft_graph" in a["app_role_id"]
    }


def test_dev_in_dry_run_holds_no_enforcement_permission(dev: SynthesizedStack) -> None:
    roles = graph_roles(dev)
    assert "Chat.Read.All" in roles
    assert not roles & set(ENFORCEMENT_PERMISSIONS)


def test_an_enforcing_environment_grants_both_to_the_runtime(tmp_path: Path) -> None:
    from stacks.app import build

    config = load(environment(tmp_path, "enforce"))
    outdir = tmp_path / "cdktf.out"
    build([config], str(outdir)).synth()
    document = json.loads((outdir / "stacks" / config.name / "cdk.tf.json").read_text())
    stack = SynthesizedStack(config, "", document)
    roles = graph_roles(stack)
    assert roles >= {"Chat.Read.All", *ENFORCEMENT_PERMISSIONS}
    runtime = {
        a["principal_object_id"]
        for a in stack.resources("azuread_app_role_assignment").values()
        if any(p in a["app_role_id"] for p in ENFORCEMENT_PERMISSIONS)
    }
    assert len(runtime) == 1
    assert "runtime" in next(iter(runtime))
