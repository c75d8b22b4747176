"""`graphtap keys`: the notification encryption keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from graphtap.subscriptions.certificates import ALLOWED_BITS, create_certificate


@click.group()
def keys() -> None:
    """Manage the certificates Graph encrypts notifications to."""


@keys.command("create")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write ID.key.pem (mode 0600) and ID.cert.pem into.",
)
@click.option("--id", "certificate_id", help="Certificate id (default: graphtap-DATE-RANDOM).")
@click.option(
    "--bits",
    type=click.Choice([str(b) for b in ALLOWED_BITS]),
    default="2048",
    show_default=True,
    help="RSA key size.",
)
def create(out_dir: Path, certificate_id: str | None, bits: str) -> None:
    """Create a self-signed RSA certificate and its private key for rich notifications."""
    try:
        files = create_certificate(out_dir, certificate_id=certificate_id, bits=int(bits))
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"certificate id: {files.certificate_id}")
    click.echo(f"thumbprint:     {files.thumbprint}")
    click.echo(f"private key:    {files.key_path}")
    click.echo(f"certificate:    {files.certificate_path}")


@keys.command("rotate")
@click.option(
    "--env",
    "environment",
    required=True,
    help="Environment whose Key Vault certificate to renew (stack outputs in .outputs/ENV.json).",
)
@click.option("--graph-endpoint", envvar="GRAPHTAP_GRAPH_ENDPOINT", help="Graph national cloud.")
@click.option("--authority", envvar="AZURE_AUTHORITY_HOST", help="Entra authority host.")
def rotate(environment: str, graph_endpoint: str | None, authority: str | None) -> None:
    """Issue a new certificate version in Key Vault and move every subscription to it."""
    from rich.console import Console

    from graphtap.hosts.commands.azure import credential, load_deployment
    from graphtap.hosts.commands.bootstrap import outcomes_table
    from graphtap.subscriptions.bootstrap import BootstrapResult
    from graphtap.subscriptions.control_plane import ControlPlane
    from graphtap.subscriptions.reconcile import Outcome

    deployment = load_deployment(environment, graph_endpoint)

    async def run() -> tuple[list[Outcome], str | None]:
        async with credential(authority) as azure_credential:
            plane = ControlPlane.from_deployment(deployment, azure_credential)
            try:
                outcomes = await plane.rotate()
            finally:
                await plane.keyvault.close()
            return outcomes, plane.status().certificate_id

    outcomes, certificate_id = asyncio.run(run())
    console = Console()
    console.print(outcomes_table(BootstrapResult((), tuple(outcomes), certificate_id)))
    console.print(f"encryption certificate now: {certificate_id}")
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise click.ClickException(
            "; ".join(f"{o.resource}: {o.error.hint if o.error else ''}" for o in failed)
        )
