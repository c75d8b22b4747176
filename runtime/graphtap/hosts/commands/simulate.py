"""`graphtap simulate`: a synthetic tenant's notifications, exactly as Graph writes them."""

from __future__ import annotations

from pathlib import Path

import click

from graphtap.localhub import LocalHub, LocalHubError, LocalHubUnusable
from graphtap.processing.endpoints import Endpoint, EndpointError
from graphtap.simulation.emitter import SimulationSettings
from graphtap.simulation.emitter import simulate as simulate_events
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import load_certificate


@click.command()
@click.option(
    "--cert",
    "cert_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The certificate Graph encrypts to (PEM or DER).",
)
@click.option("--cert-id", required=True, help="encryptionCertificateId to put in each item.")
@click.option(
    "--client-state",
    required=True,
    envvar="GRAPHTAP_CLIENT_STATE",
    help="clientState of the simulated subscriptions [env: GRAPHTAP_CLIENT_STATE].",
)
@click.option(
    "--count",
    required=True,
    type=click.IntRange(min=0),
    help="Change notifications to emit (validation and lifecycle events come on top).",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one event body per line to FILE.jsonl.",
)
@click.option("--hub", "hub", help="Send the events to a local hub: local:DIR.")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=None,
    help="Partitions when the local hub is created (default 4).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same tenant.")
@click.option(
    "--sensitive-share",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of messages carrying sensitive values.",
)
@click.option(
    "--lifecycle-share",
    type=click.FloatRange(0, 1),
    default=0.002,
    show_default=True,
    help="Chance of a lifecycle event before each change.",
)
@click.option(
    "--fault-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of changes made faulty (tampered, wrong clientState, ...).",
)
@click.option(
    "--large-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of new and edited messages over 1 MB: the event names a blob in "
    "--payload-store instead of carrying the content, as Graph does.",
)
@click.option(
    "--payload-store",
    default=None,
    help="local:DIR, the folder standing for Graph's payload container (created if missing).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Most notifications per event body.",
)
def simulate(
    cert_path: Path,
    cert_id: str,
    client_state: str,
    count: int,
    out_file: Path | None,
    hub: str | None,
    partitions: int | None,
    seed: int,
    sensitive_share: float,
    lifecycle_share: float,
    fault_share: float,
    large_share: float,
    payload_store: str | None,
    max_batch: int,
) -> None:
    """Emit Teams chat and channel message notifications for a synthetic tenant.

    Items are encrypted to --cert exactly as Graph does (RSA-OAEP-SHA1 wrapped AES-256-CBC
    key, HMAC-SHA256 signature). The same --seed gives the same tenant, messages and
    symmetric keys; only the RSA-OAEP padding (random by design) differs between runs.
    """
    if (out_file is None) == (hub is None):
        raise click.UsageError("give exactly one of --out FILE.jsonl or --hub local:DIR")
    if large_share and payload_store is None:
        raise click.UsageError("--large-share needs --payload-store local:DIR to write them to")
    payloads = None
    if payload_store is not None:
        try:
            payloads = Endpoint.parse(payload_store, allowed=("local",), what="--payload-store")
        except EndpointError as exc:
            raise click.UsageError(str(exc)) from None
        payloads.path.mkdir(parents=True, exist_ok=True)
    settings = SimulationSettings(
        count=count,
        seed=seed,
        sensitive_share=sensitive_share,
        lifecycle_share=lifecycle_share,
        fault_share=fault_share,
        large_share=large_share,
        max_batch=max_batch,
    )
    try:
        certificate = load_certificate(cert_path)
        store = payloads.path if payloads is not None else None
        events = simulate_events(
            settings, certificate=certificate, certificate_id=cert_id, client_state=client_state
        )
        if hub is not None:
            location = Endpoint.parse(hub, allowed=("local",), what="--hub").path
            with LocalHub(location, partitions=partitions) as local:
                totals = write_events(events, hub=local, payload_store=store)
        else:
            totals = write_events(events, out_file=out_file, payload_store=store)
    except LocalHubUnusable as exc:  # damaged, read-only, a full disk: not a usage error
        raise click.ClickException(str(exc)) from None
    except (ValueError, EndpointError, LocalHubError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"wrote {totals['events']} events: {totals['changes']} changes, "
        f"{totals['validation']} validation, {totals['lifecycle']} lifecycle, "
        f"{totals['faults']} faulty"
        + (f", {totals['large']} over 1 MB in {payload_store}" if payload_store else "")
    )
