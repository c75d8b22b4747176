"""`graphtap demo`: the whole local path in one command."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphtap.hosts.commands.process import run_processor, summary_table
from graphtap.inspection import InspectionSettings, Policy
from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.processing.endpoints import Endpoint, default_lifecycle_queue
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import ProcessorOptions
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import create_certificate, load_certificate

MARKER = ".graphtap-demo"


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Scratch folder; recreated on every run.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Change notifications in the simulated tenant.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker processes [default: one per core].",
)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(workdir: Path, count: int, workers: int | None, seed: int) -> None:
    """Keys, a simulated tenant, the processor on the local hub, and a summary.

    Creates a certificate, simulates Graph writing Teams notifications (a share carrying
    sensitive values, a few tampered or misaddressed) into an embedded local hub, runs the
    processor over it and shows what it found. Nothing leaves this machine.
    """
    console = Console()
    _reset(workdir)
    keys_dir = workdir / "keys"
    certificate = create_certificate(keys_dir, certificate_id="graphtap-demo")
    client_state = secrets.token_urlsafe(32)
    hash_key_path = workdir / "finding-hash.key"
    descriptor = os.open(hash_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(secrets.token_hex(32))
    hub_dir = workdir / "hub"
    sink = Endpoint("sqlite", workdir / "verdicts.sqlite")
    workers = workers or len(os.sched_getaffinity(0))
    console.print(
        f"[bold]graphtap demo[/]: certificate [cyan]{certificate.certificate_id}[/] "
        f"(thumbprint {certificate.thumbprint[:12]}...), {count:,} notifications, "
        f"{workers} worker(s), working in {workdir}/"
    )

    settings = SimulationSettings(count=count, seed=seed, fault_share=0.01, lifecycle_share=0.002)
    events = simulate(
        settings,
        certificate=load_certificate(certificate.certificate_path),
        certificate_id=certificate.certificate_id,
        client_state=client_state,
    )
    progress = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        simulating = progress.add_task("simulate", total=count)
        with LocalHub(hub_dir, partitions=4) as hub:
            written = write_events(
                events,
                hub=hub,
                on_event=lambda e: progress.advance(simulating, e.changes + len(e.faults)),
            )
        processing = progress.add_task("process", total=written["events"])
        summary = run_processor(
            Endpoint("local", hub_dir),
            sink,
            None,
            default_lifecycle_queue(sink),
            PipelineSettings(
                key_paths=(keys_dir,),
                client_states=(client_state,),
                inspection=InspectionSettings(
                    hash_key=bytes.fromhex(hash_key_path.read_text()), policy=Policy.default()
                ),
            ),
            ProcessorOptions(workers=workers),
            consumer_group=DEFAULT_CONSUMER_GROUP,
            follow=False,
            on_progress=lambda _summary, n: progress.advance(processing, n),
        )
    console.print(summary_table(summary))
    console.print(_sample_findings(sink.path))
    console.print(
        f"Verdicts and dead letters: {sink.path} (tables verdicts, dead_letters,"
        " dead_letter_events, lifecycle_events). Run it again: the same seed gives the same"
        " tenant."
    )


def _reset(workdir: Path) -> None:
    """Recreate the scratch folder, refusing to delete a folder the demo did not make."""
    if workdir.exists():
        if not (workdir / MARKER).exists():
            raise click.UsageError(
                f"{workdir} exists and was not made by graphtap demo; choose --workdir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).touch()


def _sample_findings(database: Path) -> Table:
    """A few verdicts with findings, as an analyst would see them: masked, hashed, no content."""
    table = Table(title="sample verdicts with findings (values masked)")
    for column in ("change", "conversation", "severity", "type", "confidence", "preview", "hash"):
        table.add_column(column)
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT change_type, conversation_id, severity, findings FROM verdicts"
            " WHERE finding_count > 0 ORDER BY processed_at LIMIT 6"
        ).fetchall()
    for change_type, conversation_id, severity, findings in rows:
        for finding in json.loads(findings)[:2]:
            table.add_row(
                change_type,
                (conversation_id or "")[:28],
                severity,
                finding["type"],
                str(finding["confidence"]),
                finding["preview"],
                finding["value_hash"][:12],
            )
    return table
