"""The one place a processing path is composed: what a host knows in, pipeline and processor out.

Every host turns its own inputs (CLI flags, app settings, Key Vault) into the same two things
here: `pipeline_settings` (keys, accepted clientStates, the finding hash key and the policy)
and, for a local source and stores, `LocalRun`'s processor (the `process` command,
`serve --source local`, the demo, the benchmark and the tests). On Azure the hosts are handed
batches instead: `hosts.azure.AzureProcessing` builds the same settings here and commits
through the one batch handler. Hosts add nothing but their own I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from azure.core.credentials_async import AsyncTokenCredential

from graphtap.inspection import InspectionSettings, Policy
from graphtap.notifications.authenticity import ClientStateCheck, TokenPolicy
from graphtap.notifications.model import DEFAULT_MAX_EVENT_BYTES
from graphtap.processing.endpoints import Endpoint, Stores, open_source, open_stores
from graphtap.processing.fetch import ContentFetcher, MailReader, PayloadStore
from graphtap.processing.fetch.payloads import open_payload_store
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outbox import ActionOutbox
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import Processor, ProcessorOptions, ProgressCallback
from graphtap.processing.sources import EventSource


def pipeline_settings(
    *,
    key_paths: Sequence[Path],
    client_states: Iterable[str],
    hash_key: bytes,
    policy: Policy | None = None,
    key_password: bytes | None = None,
    token_policy: TokenPolicy | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> PipelineSettings:
    """The settings every worker builds its pipeline from. `client_states` may hold
    space-separated values (as `$GRAPHTAP_CLIENT_STATES` does); repeats collapse."""
    states = tuple(dict.fromkeys(s for value in client_states for s in value.split()))
    if not states:
        raise ValueError("at least one accepted clientState is required")
    return PipelineSettings(
        key_paths=tuple(key_paths),
        client_states=states,
        inspection=InspectionSettings(hash_key=hash_key, policy=policy or Policy.default()),
        key_password=key_password,
        token_policy=token_policy,
        max_event_bytes=max_event_bytes,
    )


def content_fetcher(
    settings: PipelineSettings,
    *,
    payloads: PayloadStore | None = None,
    mail: MailReader | None = None,
) -> ContentFetcher:
    """What reads, before the pipeline, the content items point at (Graph's large payloads,
    Outlook messages), for items carrying one of the pipeline's accepted clientStates."""
    return ContentFetcher(
        ClientStateCheck(settings.client_states),
        payloads=payloads,
        mail=mail,
        max_event_bytes=settings.max_event_bytes,
    )


def payload_fetcher(
    settings: PipelineSettings,
    payload_store: str | None,
    *,
    credential: AsyncTokenCredential | None = None,
) -> ContentFetcher | None:
    """A command's fetcher from its `--payload-store`: `local:DIR` (a folder standing for
    Graph's container), or `blob:https://ACCOUNT...` read with `credential`. None without
    one: large payloads are then dead-lettered `payload_unavailable`. Raises ValueError
    naming a bad spec."""
    if payload_store is None:
        return None
    store = open_payload_store(payload_store, credential=credential)
    return content_fetcher(settings, payloads=store)


@dataclass
class LocalRun:
    """A local run's open endpoints: the source, the verdict and dead-letter stores, the
    lifecycle queue and the action outbox (in the queue's file); `processor` runs them,
    `close` closes all of them."""

    source: EventSource
    stores: Stores
    lifecycle: LifecycleQueue
    outbox: ActionOutbox

    @classmethod
    def open(
        cls,
        source: Endpoint | EventSource,
        sink: Endpoint,
        dead_letters: Endpoint | None,
        lifecycle: Path,
        *,
        consumer_group: str,
        follow: bool = False,
    ) -> LocalRun:
        """Open in order; whatever fails to open leaves nothing else open, and its error
        (a damaged hub or store, a full disk) reaches the host unchanged."""
        opened = (
            open_source(source, consumer_group=consumer_group, follow=follow)
            if isinstance(source, Endpoint)
            else source
        )
        try:
            stores = open_stores(sink, dead_letters)
        except BaseException:
            opened.close()
            raise
        try:
            queue = LifecycleQueue(lifecycle)
        except BaseException:
            opened.close()
            stores.close()
            raise
        try:
            outbox = ActionOutbox(lifecycle)
        except BaseException:
            opened.close()
            stores.close()
            queue.close()
            raise
        return cls(opened, stores, queue, outbox)

    def processor(
        self,
        settings: PipelineSettings,
        options: ProcessorOptions | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        fetcher: ContentFetcher | None = None,
    ) -> Processor:
        return Processor(
            source=self.source,
            sink=self.stores.sink,
            dead_letters=self.stores.dead_letters,
            lifecycle=self.lifecycle,
            outbox=self.outbox,
            settings=settings,
            options=options or ProcessorOptions(),
            on_progress=on_progress,
            fetcher=fetcher,
        )

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            try:
                self.stores.close()
            finally:
                try:
                    self.lifecycle.close()
                finally:
                    self.outbox.close()
