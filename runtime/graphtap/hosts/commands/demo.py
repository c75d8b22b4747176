"""`graphtap demo`: the whole local path in one command.

The demo's keys, clientState and finding hash key stay in its folder (secrets in mode 0600
files, never printed) and are reused by the next run, which starts a new hub and store; so
the command it prints last, which serves the status page for the demo's hub, keeps working.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphtap.hosts.commands.process import run_processor, summary_table
from graphtap.inspection import load_policy
from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.notifications.keyring import KEY_SUFFIX, thumbprint
from graphtap.processing import compose
from graphtap.processing.endpoints import Endpoint, default_lifecycle_queue
from graphtap.processing.runner import ProcessorOptions
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import (
    CERT_SUFFIX,
    CertificateFiles,
    create_certificate,
    load_certificate,
)

MARKER = ".graphtap-demo"
CERTIFICATE_ID = "graphtap-demo"
KEYS = "keys"
CLIENT_STATE_FILE = "client-state"
HASH_KEY_FILE = "finding-hash.key"
POLICY_FILE = "policy.toml"
#: The demo's enforcement: the packaged inspection policy, acting in dry run only.
DEMO_ENFORCEMENT = """
# graphtap demo: what would be done in Teams, recorded and shown, Graph never called.
[enforcement]
mode = "dry_run"
lift_on_fix = true
compliance_url = "https://contoso.example/dlp"

[[enforcement.rules]]
name = "secrets and keys"
action = "block"
min_severity = "critical"
min_confidence = 75
tip = "Credentials never go in chat: rotate it and share through the vault."
allow_override = false

[[enforcement.rules]]
name = "payment and identity numbers"
action = "block_external"
min_severity = "high"
min_confidence = 75
tip = "This may not leave the company."
allow_override = true

[[enforcement.rules]]
name = "anything else"
action = "notify_sender"
tip = "This message may contain sensitive information."
allow_override = true
"""
#: What a new run keeps from the last: the keys and the secrets the status page needs.
KEPT = frozenset({MARKER, KEYS, CLIENT_STATE_FILE, HASH_KEY_FILE})


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Scratch folder; recreated on every run, except its keys and secrets.",
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
    keys_dir = workdir / KEYS
    certificate = _certificate(keys_dir)
    client_state_path = workdir / CLIENT_STATE_FILE
    client_state = _secret(client_state_path, lambda: secrets.token_urlsafe(32))
    hash_key_path = workdir / HASH_KEY_FILE
    _secret(hash_key_path, lambda: secrets.token_hex(32))
    hub_dir = workdir / "hub"
    sink = Endpoint("sqlite", workdir / "verdicts.sqlite")
    policy_path = workdir / POLICY_FILE
    packaged = resources.files("graphtap.inspection").joinpath("default_policy.toml")
    policy_path.write_text(packaged.read_text() + DEMO_ENFORCEMENT, encoding="utf-8")
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
            compose.pipeline_settings(
                key_paths=(keys_dir,),
                client_states=(client_state,),
                hash_key=bytes.fromhex(hash_key_path.read_text().strip()),
                policy=load_policy(policy_path),
            ),
            ProcessorOptions(workers=workers),
            consumer_group=DEFAULT_CONSUMER_GROUP,
            follow=False,
            on_progress=lambda _summary, n: progress.advance(processing, n),
        )
    console.print(summary_table(summary))
    console.print(_sample_findings(sink.path))
    console.print(dry_run_table(sink.path, policy_path))
    console.print(
        f"Verdicts and dead letters: {sink.path} (tables verdicts, dead_letters,"
        " dead_letter_events, lifecycle_events). Run it again: the same seed gives the same"
        " tenant, and the keys and secrets stay. `graphtap findings --sink"
        f" sqlite:{sink.path}` lists every finding."
    )
    command = serve_command(workdir)
    console.print("The status page for this hub, on http://127.0.0.1:8000/:")
    console.print(command, markup=False, highlight=False, soft_wrap=True)


def serve_command(workdir: Path) -> str:
    """`graphtap serve` for the demo's hub and store, secrets read from their files."""
    arguments = (
        _program(),
        "serve",
        "--source",
        f"local:{workdir / 'hub'}",
        "--keys",
        str(workdir / KEYS),
        "--client-state-file",
        str(workdir / CLIENT_STATE_FILE),
        "--hash-key-file",
        str(workdir / HASH_KEY_FILE),
        "--sink",
        f"sqlite:{workdir / 'verdicts.sqlite'}",
    )
    return shlex.join(arguments)


def _program() -> str:
    """`graphtap`, or the path this was run as when that is not the one on PATH (as
    `make demo` runs `.venv/bin/graphtap`), so the printed command runs as printed."""
    invoked = Path(sys.argv[0])
    if invoked.name != "graphtap" or invoked.parent == Path():
        return "graphtap"
    on_path = shutil.which("graphtap")
    if on_path is not None and Path(on_path).resolve() == invoked.resolve():
        return "graphtap"
    return str(invoked)


def _reset(workdir: Path) -> None:
    """Empty the scratch folder but for its keys and secrets, refusing to touch a folder the
    demo did not make."""
    if workdir.exists():
        if not (workdir / MARKER).exists():
            raise click.UsageError(
                f"{workdir} exists and was not made by graphtap demo; choose --workdir"
            )
        for entry in workdir.iterdir():
            if entry.name in KEPT:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).touch()


def _certificate(keys_dir: Path) -> CertificateFiles:
    """The demo's certificate: the one a previous run made, else a new one."""
    key_path = keys_dir / f"{CERTIFICATE_ID}{KEY_SUFFIX}"
    certificate_path = keys_dir / f"{CERTIFICATE_ID}{CERT_SUFFIX}"
    if key_path.exists() and certificate_path.exists():
        certificate = load_certificate(certificate_path)
        return CertificateFiles(CERTIFICATE_ID, key_path, certificate_path, thumbprint(certificate))
    shutil.rmtree(keys_dir, ignore_errors=True)  # half of a pair is of no use
    return create_certificate(keys_dir, certificate_id=CERTIFICATE_ID)


def _secret(path: Path, new: Callable[[], str]) -> str:
    """A secret kept in a mode 0600 file: the one already there, else a new one."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            os.chmod(path, 0o600)
            return value
        path.unlink()
    value = new()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


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


def dry_run_table(database: Path, policy: Path) -> Table:
    """What enforcement in dry run would have done: actions by rule, no content."""
    counts: Counter[tuple[str, str, str]] = Counter()
    with sqlite3.connect(database) as db:
        for (record,) in db.execute("SELECT action FROM verdicts WHERE action IS NOT NULL"):
            action = json.loads(record)
            counts[(action["rule"], action["action"], action["state"])] += 1
    table = Table(title=f"enforcement in dry run ({policy}): what would have been done in Teams")
    for column in ("rule", "action", "state", "messages"):
        table.add_column(column, justify="right" if column == "messages" else "left")
    for (rule, action, state), count in sorted(counts.items()):
        table.add_row(rule, action, state, f"{count:,}")
    if not counts:
        table.add_row("-", "-", "-", "0")
    return table
