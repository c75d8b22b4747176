"""`graphtap doctor`: check the deployment Graph will publish to, without touching Graph."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from graphtap.hosts.commands.azure import (
    cloud_options,
    credential,
    environment_option,
    load_deployment,
)
from graphtap.subscriptions.preflight import Check, check_deployment


def checks_table(checks: list[Check] | tuple[Check, ...]) -> Table:
    table = Table("check", "result", "detail")
    for check in checks:
        table.add_row(check.name, "[green]ok" if check.ok else "[red]FAILED", check.detail)
    return table


@click.command()
@environment_option
@cloud_options
def doctor(environment: str, graph_endpoint: str | None, authority: str | None) -> None:
    """Check the Event Hubs namespace and hub (exist, local auth off, partitions)."""
    deployment = load_deployment(environment, graph_endpoint)

    async def run() -> list[Check]:
        async with credential(authority, deployment) as azure_credential:
            return await check_deployment(deployment, azure_credential)

    checks = asyncio.run(run())
    Console().print(checks_table(checks))
    failed = [check for check in checks if not check.ok]
    if failed:
        raise click.ClickException(
            f"{len(failed)} check(s) failed: " + "; ".join(c.detail for c in failed)
        )
