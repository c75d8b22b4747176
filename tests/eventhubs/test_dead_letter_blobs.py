"""Dead letters in Blob Storage on the Event Hubs path: stored before the checkpoint moves.

The dead-letter blobs and the checkpoints (the SDK's `BlobCheckpointStore`) both live in
Azurite, in one account as in the deployment.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.sinks.blob import BlobDeadLetters
from graphtap.processing.sinks.eventhubs import records
from graphtap.processing.sources import SourceEvent
from graphtap.simulation.emitter import SimulatedEvent
from tests.eventhubs.conftest import (
    FINDINGS,
    NOTIFICATIONS,
    InstanceFactory,
    checkpoints,
    drained,
    refuse_checkpoint_writes,
    wait_for,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage
from tests.fakes.eventhubs import Installed

CONTAINER = "dead-letters"
POISON = [b"\xff\xfe not json", b'{"value": 7}', b"[]"]


def blob_store(service: AzuriteStorage) -> BlobDeadLetters:
    return BlobDeadLetters(
        service.account_url, CONTAINER, credential=TokenCredential(), transport=service.transport()
    )


def test_a_dead_letter_storage_outage_holds_the_checkpoint_and_loses_nothing(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    pipeline_settings: PipelineSettings,
    azurite_storage: AzuriteStorage,
) -> None:
    good = [e.body for e in traffic if e.changes and not e.faults][:4]
    bodies = [good[0], *POISON, *good[1:]]
    service = azurite_storage  # the container is not there yet: every write is refused

    async def scenario() -> None:
        hubs.namespace.publish(NOTIFICATIONS, bodies, partition_key="poison")
        instance = make_instance(dead_letters=blob_store(service))
        instance.start()
        await wait_for(lambda: instance.source.errors >= 3, what="failed batches")
        assert checkpoints(hubs) == {}  # nothing moved while the dead letters had nowhere to go
        assert instance.summary.events == 0
        # Every dead-letter write was refused for the missing container. The checkpoint store
        # shares the account: its first claim of each partition is a BlobNotFound (it then
        # creates the ownership blob), and a claim that lost to its own earlier one a 412.
        refused = Counter(service.refused_at)
        assert {code for code, where in refused if where == CONTAINER} == {"ContainerNotFound"}
        assert {where for _, where in refused} <= {CONTAINER, "checkpoints"}
        service.create_container(CONTAINER)  # storage is back
        await wait_for(lambda: drained(hubs, instance.source), what="the partition handled")
        await instance.close()
        assert instance.summary.dead_letters == len(POISON)

    asyncio.run(scenario())
    stored = {name: json.loads(body) for name, body in service.blobs(CONTAINER).items()}
    events = [record for name, record in stored.items() if name.startswith("events/")]
    letters = [record for name, record in stored.items() if not name.startswith("events/")]
    assert sorted(event["body"] for event in events) == sorted(
        body.decode("utf-8", "backslashreplace") for body in POISON
    )  # each poison event kept whole, once
    assert sorted(letter["event_key"] for letter in letters) == sorted(
        e["event_key"] for e in events
    )
    pipeline = Pipeline.from_settings(pipeline_settings)
    wanted = Counter(
        v.key for body in good for v in pipeline.process(SourceEvent("0", 0, body)).verdicts
    )
    sent = Counter(
        r["verdict_key"] for body in hubs.namespace.bodies(FINDINGS) for r in records(body)
    )
    assert sent == wanted  # the batch was delivered again, and each verdict sent once


def test_a_replayed_batch_adds_no_dead_letter_blob(
    hubs: Installed, make_instance: InstanceFactory, azurite_storage: AzuriteStorage
) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)

    async def scenario() -> None:
        service.fault = refuse_checkpoint_writes  # stored, then the checkpoint is lost
        hubs.namespace.publish(NOTIFICATIONS, POISON, partition_key="poison")
        instance = make_instance(dead_letters=blob_store(service))
        instance.start()
        await wait_for(lambda: instance.source.errors >= 2, what="failed checkpoints")
        service.fault = None
        await wait_for(lambda: drained(hubs, instance.source), what="the partition handled")
        await instance.close()

    asyncio.run(scenario())
    assert len(service.blobs(CONTAINER)) == 2 * len(POISON)  # each event's body and letter
    assert service.refused.count("BlobAlreadyExists") >= 4 * len(POISON)  # replays refused
