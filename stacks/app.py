"""The CDKTF app: one `GraphtapStack` per environment config."""

from __future__ import annotations

from collections.abc import Sequence

from stacks.cdk import App
from stacks.config import EnvironmentConfig
from stacks.stack import GraphtapStack


def build(configs: Sequence[EnvironmentConfig], outdir: str | None = None) -> App:
    """An app holding every environment's stack (not yet synthesized)."""
    app = App(outdir=outdir) if outdir else App()
    for config in configs:
        GraphtapStack(app, config)
    return app


def synthesize(configs: Sequence[EnvironmentConfig], outdir: str | None = None) -> App:
    app = build(configs, outdir)
    app.synth()
    return app
