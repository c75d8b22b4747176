"""The Azure Functions entry: its trigger declaration, and the handler without the host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.meta import Datum

from graphtap.hosts.function import FunctionHandler, partition_of
from graphtap.processing.committer import BatchCommitter, BlockingDeadLetters
from graphtap.processing.executor import PipelineExecutor
from graphtap.processing.handler import BatchHandler
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.sinks.eventhubs import EventHubsVerdictSink, SinkUnavailable, records
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.summary import Summary
from graphtap.simulation.emitter import SimulatedEvent
from tests.eventhubs.conftest import FAST_RETRY, FINDINGS, NAMESPACE, FakeCredential
from tests.fakes.eventhubs import Installed


@pytest.fixture(scope="module")
def function() -> Any:
    """The one function `runtime/function_app.py` declares (indexed once, as the host does)."""
    import function_app

    [declared] = function_app.app.get_functions()
    return declared


def test_trigger_is_event_hubs_batch_with_identity_connection(function: Any) -> None:
    [binding] = json.loads(function.get_function_json())["bindings"]
    assert binding == {
        "direction": "IN",
        "type": "eventHubTrigger",
        "name": "events",
        "connection": "NotificationsHub",  # NotificationsHub__fullyQualifiedNamespace etc.
        "eventHubName": "%GRAPHTAP_NOTIFICATIONS_HUB%",
        "cardinality": "MANY",
        "consumerGroup": "%GRAPHTAP_CONSUMER_GROUP%",
    }


def test_retries_are_unlimited_so_an_outage_never_skips_a_batch(function: Any) -> None:
    retry = function.get_setting("retry_policy").get_dict_repr()
    assert retry["strategy"] == "exponential_backoff"
    assert retry["max_retry_count"] == "-1"


def test_host_json_batches_and_checkpoints_every_batch() -> None:
    host = json.loads((Path(__file__).resolve().parents[2] / "runtime" / "host.json").read_text())
    hub = host["extensions"]["eventHubs"]
    assert hub["batchCheckpointFrequency"] == 1
    assert hub["maxEventBatchSize"] > 1


def trigger_events(bodies: list[bytes], partition: str) -> list[func.EventHubEvent]:
    metadata = {"PartitionContext": Datum(json.dumps({"PartitionId": partition}), "json")}
    return [
        func.EventHubEvent(body=body, sequence_number=n, offset=str(n), trigger_metadata=metadata)
        for n, body in enumerate(bodies)
    ]


@pytest.fixture
def handler(
    hubs: Installed, pipeline_settings: PipelineSettings, tmp_path: Path
) -> Iterator[tuple[FunctionHandler, Summary]]:
    store = SqliteStore(tmp_path / "dead.sqlite")
    lifecycle = LifecycleQueue(tmp_path / "lifecycle.sqlite")
    executor = PipelineExecutor(pipeline_settings)
    sink = EventHubsVerdictSink(NAMESPACE, FINDINGS, credential=FakeCredential(), retry=FAST_RETRY)
    summary = Summary()
    committer = BatchCommitter(
        sink=sink, dead_letters=BlockingDeadLetters(store), lifecycle=lifecycle, summary=summary
    )
    yield FunctionHandler(BatchHandler(executor, committer)), summary
    asyncio.run(sink.close())
    executor.close()
    store.close()
    lifecycle.close()


def test_handler_sends_one_verdict_per_change_to_the_findings_hub(
    hubs: Installed,
    handler: tuple[FunctionHandler, Summary],
    traffic: list[SimulatedEvent],
    expected: Any,
) -> None:
    run, summary = handler
    events = trigger_events([e.body for e in traffic], "3")
    asyncio.run(run.handle(events))
    keys = [r["verdict_key"] for b in hubs.namespace.bodies(FINDINGS) for r in records(b)]
    assert sorted(keys) == sorted(expected.verdict_keys)
    assert summary.events == len(traffic)
    assert summary.dead_letters == expected.dead_letters
    sources = {
        r["source"]["partition"] for b in hubs.namespace.bodies(FINDINGS) for r in records(b)
    }
    assert sources == {"3"}


def test_handler_raises_on_a_findings_hub_outage_so_the_host_retries(
    hubs: Installed, handler: tuple[FunctionHandler, Summary], traffic: list[SimulatedEvent]
) -> None:
    run, summary = handler
    hubs.namespace.send_failures = 10**6
    with pytest.raises(SinkUnavailable):
        asyncio.run(run.handle(trigger_events([e.body for e in traffic[:20]], "0")))
    assert summary.events == 0  # nothing recorded as done


def test_partition_comes_from_the_trigger_metadata() -> None:
    [event] = trigger_events([b"{}"], "7")
    assert partition_of(event) == "7"
    assert partition_of(func.EventHubEvent(body=b"{}")) == "unknown"


def test_the_function_hands_its_batch_to_the_shared_handler(
    function: Any,
    hubs: Installed,
    handler: tuple[FunctionHandler, Summary],
    traffic: list[SimulatedEvent],
    mocker: Any,
) -> None:
    run, summary = handler

    async def shared() -> FunctionHandler:
        return run

    mocker.patch("function_app.shared_handler", shared)
    events = trigger_events([e.body for e in traffic[:12]], "1")
    asyncio.run(function.get_user_function()(events))
    assert summary.events == 12
