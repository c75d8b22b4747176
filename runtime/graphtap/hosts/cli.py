"""The `graphtap` command: each sub-command lives in `graphtap.hosts.commands`."""

from __future__ import annotations

import logging
import os

import click

from graphtap import __version__
from graphtap.hosts.commands import (
    actions,
    bootstrap,
    deadletters,
    demo,
    doctor,
    findings,
    inspect,
    keys,
    process,
    serve,
    simulate,
)

COMMANDS: tuple[click.Command, ...] = (
    keys.keys,
    simulate.simulate,
    process.process,
    demo.demo,
    findings.findings,
    deadletters.deadletters,
    actions.actions,
    inspect.inspect,
    inspect.edm_hash,
    serve.serve,
    bootstrap.bootstrap,
    doctor.doctor,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="graphtap")
@click.option(
    "--log-level",
    default=lambda: os.environ.get("GRAPHTAP_LOG_LEVEL", "WARNING"),
    show_default="WARNING or $GRAPHTAP_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level for graphtap's own loggers (logs never carry message content or secrets).",
)
def cli(log_level: str) -> None:
    """graphtap: a DLP feed out of Microsoft Graph change notifications in Event Hubs."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="graphtap")
