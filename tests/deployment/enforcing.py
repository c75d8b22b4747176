"""prod as an environment that enforces: its folder copied, the policy's mode set to enforce,
and the stack synthesized from it, as `make synth` would for such an environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from stacks.config import ENVIRONMENTS_DIR, load


def enforcing_prod(directory: Path) -> tuple[dict[str, Any], Path]:
    """The synthesized `cdk.tf.json` and the policy file it was synthesized with."""
    from stacks.app import build

    folder = directory / "environments" / "prod"
    folder.mkdir(parents=True)
    for name in ("stack.toml", "policy.toml", "subscriptions.toml"):
        shutil.copy(ENVIRONMENTS_DIR / "prod" / name, folder / name)
    policy = folder / "policy.toml"
    text = policy.read_text()
    assert 'mode = "report"' in text
    policy.write_text(text.replace('mode = "report"', 'mode = "enforce"'))
    config = load(folder / "stack.toml")
    outdir = directory / "cdktf.out"
    build([config], str(outdir)).synth()
    document = json.loads((outdir / "stacks" / config.name / "cdk.tf.json").read_text())
    return document, policy
