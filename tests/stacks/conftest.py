"""Stack fixtures: every shipped environment is built and synthesized once per test session."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stacks.config import EnvironmentConfig, load_all

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass(frozen=True)
class SynthesizedStack:
    config: EnvironmentConfig
    testing_synth: str  # Testing.synth output: sorted, no metadata (for matchers and snapshots)
    document: dict[str, Any]  # cdk.tf.json as Terraform reads it

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return dict(self.document.get("resource", {}).get(kind, {}))


@dataclass(frozen=True)
class SynthesizedApp:
    outdir: Path
    stacks: dict[str, SynthesizedStack]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthesizedApp]:
    # The bindings allocate hundreds of thousands of objects; collecting while they load
    # only costs time in this short-lived build.
    gc.disable()
    try:
        from stacks.app import build
        from stacks.cdk import Testing as CdkTesting

        configs = load_all()
        outdir = tmp_path_factory.mktemp("cdktf.out")
        app = build(configs, str(outdir))
        app.synth()
        stacks = {}
        for config in configs:
            stack = app.node.find_child(config.name)
            document = json.loads((outdir / "stacks" / config.name / "cdk.tf.json").read_text())
            stacks[config.name] = SynthesizedStack(
                config,
                CdkTesting.synth(stack),
                document,  # type: ignore[arg-type]
            )
    finally:
        gc.freeze()  # the bindings' objects live for the session: keep later collections cheap
        gc.enable()
    return SynthesizedApp(outdir, stacks)


@pytest.fixture(scope="session")
def dev(synthesized: SynthesizedApp) -> SynthesizedStack:
    return synthesized.stacks["dev"]


@pytest.fixture(scope="session")
def prod(synthesized: SynthesizedApp) -> SynthesizedStack:
    return synthesized.stacks["prod"]
