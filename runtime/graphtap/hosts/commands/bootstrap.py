"""`graphtap bootstrap`: check the deployment and create the runtime's secrets."""

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
from graphtap.hosts.commands.doctor import checks_table
from graphtap.subscriptions.bootstrap import BootstrapResult
from graphtap.subscriptions.bootstrap import bootstrap as run_bootstrap
from graphtap.subscriptions.desired import DesiredStateError, load_desired


def secrets_table(result: BootstrapResult) -> Table:
    table = Table("Key Vault secret", "action")
    for secret in result.secrets:
        action = "created" if secret.created else "updated" if secret.updated else "kept"
        table.add_row(secret.name, action)
    return table


def report(result: BootstrapResult, console: Console) -> int:
    """Print what happened; the exit status: 0 done, 2 deployment unsound."""
    if not result.preflight_ok:
        console.print(checks_table(result.checks))
        console.print("[red]the deployment is not ready; no secret was written")
        return 2
    console.print(secrets_table(result))
    console.print(f"encryption certificate: {result.certificate_id}")
    console.print(
        "subscriptions: the web app's control plane creates and renews them as the runtime "
        "identity (see its status page); a host that started before this run picks the "
        "secrets up within a minute"
    )
    return 0


@click.command()
@environment_option
@cloud_options
def bootstrap(environment: str, graph_endpoint: str | None, authority: str | None) -> None:
    """Check the deployment and create the secrets the runtime reads (clientState, hash key)."""
    deployment = load_deployment(environment, graph_endpoint)
    try:
        # The declaration the control plane will apply: refuse a broken one before deploying on.
        load_desired(environment)
    except DesiredStateError as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> BootstrapResult:
        async with credential(authority, deployment) as azure_credential:
            return await run_bootstrap(deployment, azure_credential)

    status = report(asyncio.run(run()), Console())
    if status:
        raise SystemExit(status)
