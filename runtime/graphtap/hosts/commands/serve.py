"""`graphtap serve`: the App Service app: processor, control plane and web app in one process.

With `--source local:DIR` (or no Azure app settings) it processes the embedded local hub;
with the stack's `GRAPHTAP_*` app settings it reads Event Hubs, sends verdicts to the
findings hub, takes its key and clientState from Key Vault and runs the control plane.
Either way it serves /healthz, /readyz, /metrics and the status page until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import click
from starlette.applications import Starlette

from graphtap.deployment import Deployment, DeploymentError
from graphtap.hosts.access import AccessPolicy
from graphtap.hosts.commands.options import (
    HASH_KEY_ENV,
    finding_hash_key,
    hash_key_file_option,
    payload_store_option,
)
from graphtap.hosts.findings import FindingRow
from graphtap.hosts.history import DEFAULT_INTERVAL, RecentFindings, StatusHistory
from graphtap.hosts.webapp import ControlPlaneView, StatusSources, create_app
from graphtap.hosts.webapp import serve as run_app
from graphtap.inspection import InspectionSettings, Policy, load_policy
from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHubError
from graphtap.notifications.keyring import KeyRing, KeyRingError
from graphtap.processing import compose
from graphtap.processing.endpoints import (
    SINK_SCHEMES,
    Endpoint,
    EndpointError,
    default_lifecycle_queue,
)
from graphtap.processing.partitions import PartitionStatus, lag_observations
from graphtap.processing.runner import DEFAULT_BATCH_SIZE, ProcessorOptions
from graphtap.processing.summary import Summary
from graphtap.telemetry import (
    configure_azure_monitor,
    configure_logging,
    observe_metrics,
)
from graphtap.transactions import StoreError

log = logging.getLogger(__name__)

AZURE_SETTING = "GRAPHTAP_EVENTHUB_NAMESPACE"
#: Set by App Service on every site; its front end reaches the app on all interfaces.
APP_SERVICE_SETTING = "WEBSITE_SITE_NAME"


#: "false" when the Function App processes notifications and the web app keeps subscriptions.
PROCESS_NOTIFICATIONS_ENV = "GRAPHTAP_PROCESS_NOTIFICATIONS"


class Service(Protocol):
    mode: str

    def summary(self) -> Summary: ...
    def partitions(self) -> list[PartitionStatus]: ...
    def ready(self) -> bool: ...
    def failed_batches(self) -> int: ...
    async def run(self, stop: asyncio.Event) -> None: ...


class ControlPlaneService(Protocol):
    def status(self) -> Any: ...
    def observations(self) -> Iterable[tuple[str, float, Mapping[str, str]]]: ...
    async def run(self, stop: asyncio.Event) -> None: ...


@click.command()
@click.option("--source", default=None, help="local:DIR to process the local hub.")
@click.option(
    "--keys",
    "key_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Key file or folder (local hub only; on Azure the key comes from Key Vault).",
)
@click.option("--key-password", envvar="GRAPHTAP_KEY_PASSWORD", help="Password of the keys.")
@click.option(
    "--client-state",
    "client_states",
    multiple=True,
    envvar="GRAPHTAP_CLIENT_STATES",
    help="Accepted clientState (local hub; on Azure also added to the Key Vault one).",
)
@click.option(
    "--client-state-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File of accepted clientStates, one a line (keeps them out of the process list).",
)
@click.option("--sink", default=None, help="sqlite:FILE or jsonl:FILE (local hub only).")
@click.option("--dead-letter", default=None, help="jsonl:FILE or sqlite:FILE (local hub only).")
@click.option("--lifecycle-queue", type=click.Path(dir_okay=False, path_type=Path))
@payload_store_option
@click.option("--consumer-group", default=DEFAULT_CONSUMER_GROUP, show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(1, 10_000), default=DEFAULT_BATCH_SIZE, show_default=True
)
@click.option(
    "--start",
    default="earliest",
    show_default=True,
    help="Event Hubs: where partitions without a checkpoint start (earliest, latest, ISO time).",
)
@click.option(
    "--policy",
    "policy_path",
    envvar="GRAPHTAP_POLICY",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Inspection policy TOML [default: runtime/environments/ENV/policy.toml, else built-in].",
)
@hash_key_file_option
@click.option(
    "--host",
    default=lambda: "0.0.0.0" if os.environ.get(APP_SERVICE_SETTING) else "127.0.0.1",  # noqa: S104
    show_default="0.0.0.0 on App Service, else 127.0.0.1",
    help="Listen address.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=lambda: int(os.environ.get("PORT") or os.environ.get("WEBSITES_PORT") or 8000),
    show_default="$PORT, $WEBSITES_PORT or 8000",
)
@click.option(
    "--chart-interval",
    type=click.FloatRange(0.5, 600),
    default=DEFAULT_INTERVAL,
    show_default=True,
    help="Seconds between the samples the status page's charts draw (the last hour).",
)
def serve(
    source: str | None,
    key_paths: tuple[Path, ...],
    key_password: str | None,
    client_states: tuple[str, ...],
    client_state_file: Path | None,
    sink: str | None,
    dead_letter: str | None,
    lifecycle_queue: Path | None,
    payload_store: str | None,
    consumer_group: str,
    workers: int,
    batch_size: int,
    start: str,
    policy_path: Path | None,
    hash_key_file: Path | None,
    host: str,
    port: int,
    chart_interval: float,
) -> None:
    """Run the processor (and the control plane on Azure) behind a small web app.

    Endpoints: / (status page), /healthz, /readyz, /metrics (Prometheus), /status.json.
    """
    states = tuple(s for value in client_states for s in value.split())
    if client_state_file is not None:
        states += tuple(client_state_file.read_text().split())
    options = ProcessorOptions(workers=workers, batch_size=batch_size)
    if source is None and not os.environ.get(AZURE_SETTING):
        raise click.UsageError(
            f"give --source local:DIR, or run where the stack's app settings (${AZURE_SETTING}, "
            "...) are set"
        )
    configure_logging(logging.getLevelName(logging.getLogger("graphtap").getEffectiveLevel()))
    exporting = configure_azure_monitor()
    if source is not None:
        service, control = _local_service(
            source,
            key_paths,
            key_password,
            states,
            sink,
            dead_letter,
            lifecycle_queue,
            consumer_group,
            options,
            _inspection(policy_path, hash_key_file),
            payload_store,
        )

        async def opened() -> Opened:
            return service, control, None

        asyncio.run(_serve(opened, host, port, chart_interval))
        return
    if payload_store is not None:
        raise click.UsageError(
            "--payload-store is for the local hub; on Azure the deployment's payload account "
            "($GRAPHTAP_PAYLOAD_ACCOUNT_URL) is read"
        )
    try:
        deployment = Deployment.from_app_settings()
    except DeploymentError as exc:
        raise click.UsageError(str(exc)) from None
    policy = _policy(policy_path, deployment.environment)
    # Without a key given here, every instance reads the environment's key from Key Vault.
    hash_key = (
        finding_hash_key(hash_key_file)
        if hash_key_file is not None or HASH_KEY_ENV in os.environ
        else None
    )
    log.info("starting on Azure", extra={"state": "telemetry" if exporting else "no telemetry"})
    asyncio.run(
        _serve(
            lambda: _azure_service(
                deployment, policy, hash_key, workers, batch_size, start, states
            ),
            host,
            port,
            chart_interval,
        )
    )


#: The processor, the control plane (on Azure) and what to close once both have stopped.
Opened = tuple["Service", "ControlPlaneService | None", "Callable[[], Awaitable[None]] | None"]


async def _serve(
    open_service: Callable[[], Awaitable[Opened]],
    host: str,
    port: int,
    chart_interval: float = DEFAULT_INTERVAL,
) -> None:
    """Open the service inside the loop that runs it (its clients bind to that loop)."""
    service, control_plane, close = await open_service()
    observe_metrics(lambda: _observations(service, control_plane))  # exported once configured
    try:
        app = build_app(service, control_plane, chart_interval=chart_interval)
        await run_app(app, host=host, port=port)
    finally:
        if close is not None:
            await close()


def _observations(
    service: Service, control_plane: ControlPlaneService | None
) -> Iterator[tuple[str, float, Mapping[str, str]]]:
    """What this instance exports: the processor's totals, the lag of the partitions it
    owns and, where the control plane runs, every subscription's expiry and failed renewals."""
    yield from service.summary().observations()
    yield from lag_observations(service.partitions())
    if control_plane is not None:
        yield from control_plane.observations()


def build_app(
    service: Service,
    control_plane: ControlPlaneService | None,
    *,
    chart_interval: float = DEFAULT_INTERVAL,
) -> Starlette:
    """The web app, with the processor and control plane running for its lifetime, and the
    samples the status page's charts draw taken every `chart_interval` seconds."""

    failed: list[str] = []
    stopping = asyncio.Event()

    def report_exit(task: asyncio.Task[None]) -> None:
        """A background task that ends before shutdown has failed: say so, loudly."""
        error = None if task.cancelled() else task.exception()
        if error is None and stopping.is_set():
            return
        failed.append(task.get_name())
        log.error(
            "background task ended; /healthz now fails",
            extra={"state": task.get_name(), "error": type(error).__name__ if error else None},
            exc_info=error,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(service.run(stop), name="processor"),
            asyncio.create_task(
                history.run(service.summary, service.partitions, stop), name="status-history"
            ),
        ]
        if control_plane is not None:
            tasks.append(asyncio.create_task(control_plane.run(stop), name="control-plane"))
        for task in tasks:
            task.add_done_callback(report_exit)
        try:
            yield
        finally:
            stopping.set()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    history = StatusHistory(interval=chart_interval)
    view: Callable[[], ControlPlaneView] | None = None
    if control_plane is not None:
        view = control_plane.status
    sources = StatusSources(
        mode=service.mode,
        summary=service.summary,
        partitions=service.partitions,
        ready=service.ready,
        control_plane=view,
        failed_batches=service.failed_batches,
        failed_tasks=lambda: tuple(failed),
        history=history,
        latest_findings=_findings_source(service),
    )
    # On Azure the stack names the app roles that may read it; locally the app stays open.
    return create_app(sources, lifespan=lifespan, access=AccessPolicy.from_environment())


def _findings_source(service: Service) -> Callable[[int], Sequence[FindingRow]] | None:
    """The local hub's service reads its verdict store; on Azure, where verdicts leave for
    the findings hub, a bounded ring keeps the newest committed findings (masked fields)."""
    reader: Callable[[int], Sequence[FindingRow]] | None = getattr(service, "latest_findings", None)
    if reader is not None:
        return reader
    processing = getattr(service, "processing", None)
    if processing is None:
        return None
    recent = RecentFindings()
    processing.committer.observers.append(recent.add)
    return recent.latest


def _inspection(policy_path: Path | None, hash_key_file: Path | None) -> InspectionSettings:
    return InspectionSettings(
        hash_key=finding_hash_key(hash_key_file), policy=_policy(policy_path, None)
    )


def _policy(policy_path: Path | None, environment: str | None) -> Policy:
    try:
        if policy_path is not None:
            policy = load_policy(policy_path) or Policy.default()
        elif environment is not None:
            from graphtap.hosts.azure import environment_policy

            policy = environment_policy(environment)
        else:
            policy = Policy.default()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return policy


def _local_service(
    source: str,
    key_paths: tuple[Path, ...],
    key_password: str | None,
    client_states: tuple[str, ...],
    sink: str | None,
    dead_letter: str | None,
    lifecycle_queue: Path | None,
    consumer_group: str,
    options: ProcessorOptions,
    inspection: InspectionSettings,
    payload_store: str | None = None,
) -> tuple[Service, None]:
    from graphtap.hosts.local import LocalHubService, LocalServiceSettings

    if not key_paths or not client_states or sink is None:
        raise click.UsageError("the local hub needs --keys, --client-state and --sink")
    try:
        hub = Endpoint.parse(source, allowed=("local",), what="--source")
        sink_endpoint = Endpoint.parse(sink, allowed=SINK_SCHEMES, what="--sink")
        dead_letters = (
            Endpoint.parse(dead_letter, allowed=SINK_SCHEMES, what="--dead-letter")
            if dead_letter
            else None
        )
        password = key_password.encode() if key_password else None
        KeyRing.load(key_paths, password=password)  # fail fast on a bad key
        service = LocalHubService(
            LocalServiceSettings(
                hub=hub.path,
                consumer_group=consumer_group,
                sink=sink_endpoint,
                dead_letters=dead_letters,
                lifecycle_queue=lifecycle_queue or default_lifecycle_queue(sink_endpoint),
                pipeline=compose.pipeline_settings(
                    key_paths=key_paths,
                    key_password=password,
                    client_states=client_states,
                    hash_key=inspection.hash_key,
                    policy=inspection.policy,
                ),
                options=options,
                payload_store=payload_store,
            )
        )
    except (EndpointError, KeyRingError, LocalHubError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        compose.payload_fetcher(service.settings.pipeline, payload_store)  # fail fast
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--payload-store") from None
    settings = service.settings
    try:
        # Fail fast, before serving: a damaged, read-only or foreign store or hub is one
        # clear line and a non-zero exit, not a background task that dies after start-up.
        compose.LocalRun.open(
            Endpoint("local", settings.hub),
            settings.sink,
            settings.dead_letters,
            settings.lifecycle_queue,
            consumer_group=settings.consumer_group,
        ).close()
    except (StoreError, LocalHubError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    return service, None


async def _azure_service(
    deployment: Deployment,
    policy: Policy,
    hash_key: bytes | None,
    workers: int,
    batch_size: int,
    start: str,
    extra_client_states: tuple[str, ...],
) -> Opened:
    from azure.identity.aio import DefaultAzureCredential

    from graphtap.hosts.azure import AzureServiceOptions, open_azure_host

    credential = DefaultAzureCredential(
        managed_identity_client_id=deployment.runtime_client_id,
        authority=deployment.profile.authority_host,
    )
    try:
        service, control_plane = await open_azure_host(
            deployment,
            credential,
            AzureServiceOptions(
                policy=policy,
                hash_key=hash_key,
                workers=workers,
                start=start,
                max_batch_size=batch_size,
                extra_client_states=extra_client_states,
            ),
            process_notifications=(
                os.environ.get(PROCESS_NOTIFICATIONS_ENV, "true").lower() != "false"
            ),
        )
    except BaseException:
        await credential.close()
        raise
    return service, control_plane, credential.close
