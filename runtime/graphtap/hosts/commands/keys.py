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
@click.option(
    "--authority",
    envvar="AZURE_AUTHORITY_HOST",
    help="Entra authority host [default: the deployment's cloud's].",
)
def rotate(environment: str, authority: str | None) -> None:
    """Issue a new certificate version in Key Vault; the control plane moves every subscription.

    Runs as the deploying identity (Key Vault Certificates Officer). The web app's control
    plane, which owns the subscriptions, sees the new version on its next rotation check,
    hands the processors its key first and then re-keys each subscription.
    """
    from graphtap.hosts.commands.azure import credential, load_deployment
    from graphtap.subscriptions.keyvault import KeyVault

    deployment = load_deployment(environment, None)

    async def run() -> str:
        async with credential(authority, deployment) as azure_credential:
            keyvault = KeyVault(deployment.key_vault_uri, azure_credential)
            try:
                return (await keyvault.rotate(deployment.certificate_name)).certificate_id
            finally:
                await keyvault.close()

    click.echo(f"encryption certificate now: {asyncio.run(run())}")
    click.echo("the control plane moves every subscription to it on its next rotation check")
