"""The `graphtap` command: each sub-command lives in `graphtap.hosts.commands`."""

from __future__ import annotations

import importlib
import logging
import os

import click

from graphtap import __version__

#: Each sub-command's module (in `graphtap.hosts.commands`) and object, imported only when the
#: command runs (or `--help` lists them): `graphtap process` then starts without importing
#: the Azure, Graph and Teams clients the other commands need (half of a second).
COMMANDS: dict[str, tuple[str, str]] = {
    "keys": ("keys", "keys"),
    "simulate": ("simulate", "simulate"),
    "process": ("process", "process"),
    "demo": ("demo", "demo"),
    "findings": ("findings", "findings"),
    "deadletters": ("deadletters", "deadletters"),
    "actions": ("actions", "actions"),
    "inspect": ("inspect", "inspect"),
    "edm-hash": ("inspect", "edm_hash"),
    "serve": ("serve", "serve"),
    "bootstrap": ("bootstrap", "bootstrap"),
    "doctor": ("doctor", "doctor"),
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, name = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"graphtap.hosts.commands.{module}"), name)
        if not isinstance(command, click.Command):
            raise TypeError(f"graphtap.hosts.commands.{module}.{name} is not a click command")
        self.commands[cmd_name] = command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    cli(prog_name="graphtap")
