"""`graphtap actions list | apply`: the action outbox, for operators.

`list` shows every action the policy enforces and its outcome (no content: the rule, the
types, the outcome and what to do about a refusal). `apply` runs the actor once over the
pending actions, with the deployment's Graph endpoint and the operator's (or the managed
identity's) credential.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from graphtap.enforcement.actor import Enforcer
from graphtap.enforcement.messages import TeamsMessages
from graphtap.hosts.commands.azure import (
    cloud_options,
    credential,
    environment_option,
    load_deployment,
)
from graphtap.processing.outbox import ActionOutbox, OutboxRecord
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.graph import build_client
from graphtap.transactions import StoreError

OUTBOX_HELP = "The action outbox: the SQLite file beside the verdicts (`process --sink sqlite:`)."


@click.group()
def actions() -> None:
    """The actions the policy enforces in Teams, and their outcomes."""


@actions.command("list")
@click.option(
    "--outbox", type=click.Path(dir_okay=False, path_type=Path), required=True, help=OUTBOX_HELP
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_actions(outbox: Path, as_json: bool) -> None:
    """Every action, newest first, with its outcome."""
    records = _open(outbox).records()
    if as_json:
        for record in records:
            click.echo(json.dumps(record.to_dict()))
        return
    Console().print(actions_table(records, title=f"actions in {outbox}"))


@actions.command("apply")
@click.option(
    "--outbox", type=click.Path(dir_okay=False, path_type=Path), required=True, help=OUTBOX_HELP
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=500, show_default=True)
@environment_option
@cloud_options
def apply_actions(
    outbox: Path, limit: int, environment: str, graph_endpoint: str | None, authority: str | None
) -> None:
    """Apply the pending actions through Graph, once each, recording every outcome."""
    deployment = load_deployment(environment, graph_endpoint)
    store = _open(outbox)

    async def run() -> tuple[dict[str, int], str | None]:
        async with credential(authority, deployment) as azure_credential:
            client = build_client(azure_credential, endpoint=deployment.graph_endpoint)
            enforcer = Enforcer(store, TeamsMessages(client), SystemClock())
            return dict(await enforcer.drain(limit)), enforcer.last_error

    try:
        outcomes, last_error = asyncio.run(run())
    finally:
        store.close()
    click.echo(json.dumps(outcomes, sort_keys=True))
    if last_error is not None:  # no sign-in here (`az login`), Graph unreachable, throttled
        raise click.ClickException(
            f"{outcomes.get('pending', 0)} action(s) left pending; last: {last_error}"
        )


def actions_table(records: list[OutboxRecord], *, title: str) -> Table:
    table = Table(title=title)
    for column in ("decided (UTC)", "action", "rule", "types", "status", "attempts", "detail"):
        table.add_column(column, overflow="fold")
    for record in records:
        cells = (
            f"{dt.datetime.fromtimestamp(record.decided_at, dt.UTC):%Y-%m-%d %H:%M:%S}",
            record.action,
            record.rule,
            ", ".join(record.types),
            record.status,
            str(record.attempts),
            record.detail or "-",
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _open(path: Path) -> ActionOutbox:
    if not path.is_file():
        raise click.ClickException(f"action outbox {path} does not exist: give the sink's file")
    try:
        return ActionOutbox(path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
