"""`graphtap bootstrap`: register and reconcile the environment's Graph subscriptions."""

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


def outcomes_table(result: BootstrapResult) -> Table:
    table = Table("resource", "id", "expiry", "action")
    for outcome in result.outcomes:
        expiry = outcome.expiration.strftime("%Y-%m-%d %H:%M UTC") if outcome.expiration else ""
        action = outcome.action if outcome.error is None else f"[red]{outcome.action}"
        table.add_row(outcome.resource, outcome.subscription_id or "", expiry, action)
    return table


def report(result: BootstrapResult, console: Console) -> int:
    """Print what happened; the exit status: 0 done, 1 Graph refused, 2 deployment unsound."""
    if not result.preflight_ok:
        console.print(checks_table(result.checks))
        console.print("[red]the deployment is not ready; Graph was not called")
        return 2
    console.print(outcomes_table(result))
    failures = [o for o in result.outcomes if o.error is not None]
    for outcome in failures:
        assert outcome.error is not None
        console.print(f"[red]{outcome.resource}: {outcome.error.message}")
        console.print(f"  what to do: {outcome.error.hint}")
    if result.certificate_id:
        console.print(f"encryption certificate: {result.certificate_id}")
    return 1 if failures else 0


@click.command()
@environment_option
@cloud_options
def bootstrap(environment: str, graph_endpoint: str | None, authority: str | None) -> None:
    """Check the deployment, make sure clientState exists, reconcile the subscriptions."""
    deployment = load_deployment(environment, graph_endpoint)
    try:
        desired = load_desired(environment)
    except DesiredStateError as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> BootstrapResult:
        async with credential(authority) as azure_credential:
            return await run_bootstrap(deployment, azure_credential, desired)

    status = report(asyncio.run(run()), Console())
    if status:
        raise SystemExit(status)
