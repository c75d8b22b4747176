"""`graphtap serve --source local:DIR --payload-store local:DIR`: the long-running local
processor reads Graph's payloads over 1 MB from the folder standing for the payload container,
as `process` does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from graphtap.hosts.local import LocalHubService, LocalServiceSettings
from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.processing import compose
from graphtap.processing.endpoints import Endpoint
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import create_certificate, load_certificate

COUNT = 24


def test_the_local_service_inspects_large_messages_from_its_payload_store(tmp_path: Path) -> None:
    keys = create_certificate(tmp_path / "keys", certificate_id="serve-large")
    events = simulate(
        SimulationSettings(count=COUNT, seed=8, sensitive_share=1.0, large_share=0.25),
        certificate=load_certificate(keys.certificate_path),
        certificate_id=keys.certificate_id,
        client_state="serve-large-state",
    )
    (tmp_path / "payloads").mkdir()
    with LocalHub(tmp_path / "hub", partitions=2) as hub:
        written = write_events(events, hub=hub, payload_store=tmp_path / "payloads")
    assert written["large"] >= 3
    service = LocalHubService(
        LocalServiceSettings(
            hub=tmp_path / "hub",
            consumer_group=DEFAULT_CONSUMER_GROUP,
            sink=Endpoint("sqlite", tmp_path / "verdicts.sqlite"),
            dead_letters=None,
            lifecycle_queue=tmp_path / "lifecycle.sqlite",
            pipeline=compose.pipeline_settings(
                key_paths=(tmp_path / "keys",),
                client_states=("serve-large-state",),
                hash_key=b"h" * 32,
            ),
            poll_interval=0.05,
            payload_store=f"local:{tmp_path / 'payloads'}",
        )
    )

    async def serve_until_drained() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        deadline = time.monotonic() + 60
        while service.summary().verdicts < COUNT and not running.done():
            assert time.monotonic() < deadline, service.summary().to_dict()
            await asyncio.sleep(0.05)
        stop.set()
        await running

    asyncio.run(serve_until_drained())
    summary = service.summary()
    assert summary.verdicts == COUNT
    assert summary.dead_letters_by_reason == {}
    assert sum(summary.findings_by_type.values()) >= COUNT
