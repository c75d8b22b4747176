"""`graphtap process`: run the processor over a source until it is drained."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from graphtap.clouds import CLOUDS, DEFAULT_CLOUD
from graphtap.hosts.commands.options import (
    decryption_options,
    finding_hash_key,
    hash_key_file_option,
    lifecycle_queue_option,
    max_event_bytes_option,
    payload_store_option,
)
from graphtap.inspection import Policy, load_policy
from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHubError, LocalHubUnusable
from graphtap.notifications.authenticity import TokenPolicy
from graphtap.notifications.keyring import KeyRing, KeyRingError
from graphtap.processing import compose
from graphtap.processing.endpoints import (
    SINK_SCHEMES,
    SOURCE_SCHEMES,
    Endpoint,
    EndpointError,
    default_lifecycle_queue,
)
from graphtap.processing.fetch import ContentFetcher
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import (
    DEFAULT_BATCH_SIZE,
    ProcessorOptions,
    ProgressCallback,
)
from graphtap.processing.sources import EventSource
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary
from graphtap.transactions import StoreError


@click.command()
@click.option("--source", "source", required=True, help="jsonl:FILE or local:DIR.")
@decryption_options
@click.option("--sink", "sink", required=True, help="sqlite:FILE or jsonl:FILE.")
@click.option(
    "--dead-letter",
    "dead_letter",
    default=None,
    help="jsonl:FILE or sqlite:FILE [default: the sink's store].",
)
@lifecycle_queue_option
@payload_store_option
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes for decryption and inspection.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Events per batch (one checkpoint per batch).",
)
@click.option(
    "--consumer-group",
    default=DEFAULT_CONSUMER_GROUP,
    show_default=True,
    help="Consumer group whose checkpoints a local hub resumes from.",
)
@click.option(
    "--follow", is_flag=True, help="Keep polling a local hub instead of stopping when drained."
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Inspection policy TOML [default: report every finding at 65 or above].",
)
@hash_key_file_option
@click.option(
    "--app-id",
    "app_ids",
    multiple=True,
    help="Accepted audience of validation tokens (webhook-style deliveries).",
)
@click.option(
    "--jwks",
    help="JWKS URL or file to verify validation tokens with [default: Entra's, in --cloud].",
)
@click.option(
    "--cloud",
    type=click.Choice(list(CLOUDS)),
    default=DEFAULT_CLOUD,
    envvar="GRAPHTAP_CLOUD",
    show_default=True,
    help="Cloud whose Entra ID issues the validation tokens.",
)
@max_event_bytes_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def process(
    source: str,
    key_paths: tuple[Path, ...],
    key_password: str | None,
    client_states: tuple[str, ...],
    sink: str,
    dead_letter: str | None,
    lifecycle_queue: Path | None,
    payload_store: str | None,
    workers: int,
    batch_size: int,
    consumer_group: str,
    follow: bool,
    policy_path: Path | None,
    hash_key_file: Path | None,
    app_ids: tuple[str, ...],
    jwks: str | None,
    cloud: str,
    max_event_bytes: int,
    as_json: bool,
) -> None:
    """Decrypt, inspect and issue one verdict per change notification.

    Exits 0 once the source is drained and prints a summary: events, notifications,
    verdicts, findings by type, dead letters by reason and throughput.
    """
    try:
        source_endpoint = Endpoint.parse(source, allowed=SOURCE_SCHEMES, what="--source")
        sink_endpoint = Endpoint.parse(sink, allowed=SINK_SCHEMES, what="--sink")
        dead_letter_endpoint = (
            Endpoint.parse(dead_letter, allowed=SINK_SCHEMES, what="--dead-letter")
            if dead_letter
            else None
        )
        password = key_password.encode() if key_password else None
        ring = KeyRing.load(key_paths, password=password)  # fail fast, before any worker starts
        policy = load_policy(policy_path) or Policy.default()
    except (EndpointError, KeyRingError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    settings = compose.pipeline_settings(
        key_paths=key_paths,
        key_password=password,
        client_states=client_states,
        hash_key=finding_hash_key(hash_key_file),
        policy=policy,
        token_policy=TokenPolicy(app_ids=app_ids, jwks=jwks, cloud=cloud) if app_ids else None,
        max_event_bytes=max_event_bytes,
    )
    try:
        fetcher = compose.payload_fetcher(settings, payload_store)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--payload-store") from None
    console = Console(stderr=True)
    console.print(f"keys: {', '.join(e.certificate_id for e in ring.entries())}")
    progress = Progress(
        TextColumn("[bold]processing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    task = progress.add_task("events", total=None)
    with progress:
        summary = run_processor(
            source_endpoint,
            sink_endpoint,
            dead_letter_endpoint,
            lifecycle_queue or default_lifecycle_queue(sink_endpoint),
            settings,
            ProcessorOptions(workers=workers, batch_size=batch_size),
            consumer_group=consumer_group,
            follow=follow,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda _summary, events: progress.advance(task, events),
            fetcher=fetcher,
        )
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        Console().print(summary_table(summary))


def run_processor(
    source_endpoint: Endpoint,
    sink_endpoint: Endpoint,
    dead_letter_endpoint: Endpoint | None,
    lifecycle_path: Path,
    settings: PipelineSettings,
    options: ProcessorOptions,
    *,
    consumer_group: str,
    follow: bool,
    on_start: Callable[[int | None], None] | None = None,
    on_progress: ProgressCallback | None = None,
    fetcher: ContentFetcher | None = None,
) -> Summary:
    """Open the endpoints, run to the end (or a stop signal), close everything.

    `on_start` receives the number of events waiting, when the source can tell.
    """
    try:
        run = compose.LocalRun.open(
            source_endpoint,
            sink_endpoint,
            dead_letter_endpoint,
            lifecycle_path,
            consumer_group=consumer_group,
            follow=follow,
        )
    except LocalHubUnusable as exc:
        raise click.ClickException(str(exc)) from None
    except (FileNotFoundError, LocalHubError) as exc:
        raise click.UsageError(str(exc)) from None
    except (StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    source = run.source
    if on_start is not None:
        waiting = None
        if isinstance(source, LocalHubSource):
            waiting = sum(p.lag for p in source.hub.partitions(consumer_group))
        on_start(waiting)
    processor = run.processor(settings, options, on_progress=on_progress, fetcher=fetcher)
    restore = _stop_on_signals(source)
    try:
        return processor.run()
    except (StoreError, LocalHubError) as exc:
        # A store refused a batch (a full disk, say): the batch was not checkpointed and is
        # processed again on the next run.
        raise click.ClickException(f"{exc}; processing stopped") from None
    finally:
        restore()
        run.close()


def summary_table(summary: Summary) -> Table:
    table = Table(title="graphtap processor summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    figures = summary.to_dict()
    for name in (
        "events",
        "notifications",
        "validation_skipped",
        "lifecycle_queued",
        "verdicts",
        "duplicate_verdicts",
    ):
        table.add_row(name.replace("_", " "), str(figures[name]))
    table.add_section()
    for kind, count in sorted(summary.findings_by_type.items()):
        table.add_row(f"finding: {kind}", str(count))
    if not summary.findings_by_type:
        table.add_row("findings", "0")
    table.add_section()
    for reason, count in sorted(summary.dead_letters_by_reason.items()):
        table.add_row(f"dead letter: {reason}", str(count))
    if not summary.dead_letters_by_reason:
        table.add_row("dead letters", "0")
    table.add_section()
    table.add_row("seconds", f"{summary.seconds:.2f}")
    table.add_row("notifications per second", f"{summary.notifications_per_second:,.0f}")
    return table


def _stop_on_signals(source: EventSource) -> Callable[[], None]:
    """SIGTERM/SIGINT end the run after the current batch is durable and checkpointed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        source.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
