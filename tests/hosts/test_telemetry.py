"""Telemetry: structured JSON logs that never carry content or secrets; export only when set."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from graphtap.simulation.emitter import SimulatedEvent
from graphtap.telemetry import JsonFormatter, configure_azure_monitor
from tests.eventhubs.conftest import NOTIFICATIONS, InstanceFactory, drained, wait_for
from tests.fakes.eventhubs import Installed


def record(message: str, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("graphtap.x", logging.INFO, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_json_lines_carry_only_the_context_fields() -> None:
    line = json.loads(
        JsonFormatter().format(
            record(
                "batch committed",
                partition="3",
                sequence_number=41,
                subscription_id="sub-1",
                body="the message text",
                client_state="s3cret",
            )
        )
    )
    assert line["message"] == "batch committed"
    assert line["partition"] == "3"
    assert line["sequence_number"] == 41
    assert line["subscription_id"] == "sub-1"
    assert "body" not in line
    assert "client_state" not in line
    assert "s3cret" not in json.dumps(line)


def test_exceptions_are_logged_by_type_only() -> None:
    try:
        raise ValueError("clientState 's3cret' did not match")
    except ValueError:
        import sys

        made = record("failed")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert json.loads(line)["exception"] == "ValueError"
    assert "s3cret" not in line


def test_nothing_processed_reaches_a_log_record(
    hubs: Installed,
    make_instance: InstanceFactory,
    traffic: list[SimulatedEvent],
    client_state: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole Event Hubs path at DEBUG: no clientState, no planted value, no body."""
    secrets_in_traffic = {client_state, *(value for e in traffic for value in e.planted)}
    assert len(secrets_in_traffic) > 10

    async def scenario() -> None:
        hubs.namespace.publish(NOTIFICATIONS, [e.body for e in traffic])
        hubs.namespace.send_failures = 3  # retries and failures get logged too
        instance = make_instance()
        instance.start()
        await wait_for(lambda: drained(hubs, instance.source), what="all partitions handled")
        await instance.close()

    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="graphtap"):
        asyncio.run(scenario())
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    raw = [f"{r.getMessage()} {r.args!r} {vars(r)!r}" for r in caplog.records]
    assert any('"partition"' in line and '"sequence_number"' in line for line in lines)
    assert any('"subscription_id"' in line and '"findings"' in line for line in lines)
    assert any('"reason"' in line and "dead-lettered" in line for line in lines)
    for text in lines + raw:
        for secret in secrets_in_traffic:
            assert secret not in text
        assert '"encryptedContent"' not in text
        assert "dataKey" not in text


def test_azure_monitor_is_configured_only_with_a_connection_string() -> None:
    calls: list[dict[str, Any]] = []

    def configure(**options: Any) -> None:
        calls.append(options)

    assert configure_azure_monitor({}, configure=configure) is False
    assert calls == []
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
    settings = {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection}
    assert configure_azure_monitor(settings, configure=configure) is True
    assert calls == [
        {"connection_string": connection, "logger_name": "graphtap", "enable_live_metrics": False}
    ]


def test_opentelemetry_counters_read_the_processor_summary() -> None:
    from collections import Counter

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from graphtap.processing.summary import Summary
    from graphtap.telemetry import observe_metrics

    summary = Summary(events=7, notifications=9, verdicts=8)
    summary.dead_letters_by_reason = Counter({"malformed_event": 1})
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observe_metrics(summary.observations, meter_provider=provider)
    summary.events = 11  # read at collection time, not copied at registration
    points = _points(reader)
    assert points[("graphtap.events", ())] == 11
    assert points[("graphtap.dead_letters", (("reason", "malformed_event"),))] == 1
    provider.shutdown()


def _points(reader: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    from opentelemetry.sdk.metrics.export import NumberDataPoint

    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    labels = tuple(sorted((point.attributes or {}).items()))
                    points[(metric.name, labels)] = point.value
    return points


def test_partition_lag_is_a_gauge_of_the_owned_partitions_only() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from graphtap.processing.partitions import PartitionMeter, lag_observations
    from graphtap.telemetry import observe_metrics

    meter = PartitionMeter()
    meter.observe("0", last_sequence=9, last_enqueued=120)
    meter.observe("1", last_sequence=None, last_enqueued=4)  # nothing committed yet: 5 behind
    meter.observe("2", last_sequence=3, last_enqueued=50)
    meter.release("2")  # another instance reports it now
    meter.observe("3", last_sequence=7)  # head unknown: no lag to report
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observe_metrics(lambda: lag_observations(meter.snapshot()), meter_provider=provider)
    points = _points(reader)
    assert {key: value for key, value in points.items() if key[0] == "graphtap.partition.lag"} == {
        ("graphtap.partition.lag", (("partition", "0"),)): 111,
        ("graphtap.partition.lag", (("partition", "1"),)): 5,
    }
    meter.observe("0", last_sequence=120)  # caught up: a gauge reads the current value
    assert _points(reader)[("graphtap.partition.lag", (("partition", "0"),))] == 0
    provider.shutdown()


def test_only_declared_metrics_and_attributes_are_exported() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from graphtap.telemetry import METRICS, observe_metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    observe_metrics(
        lambda: [
            ("dead_letters", 2, {"reason": "malformed_event", "body": "never exported"}),
            ("undeclared", 1, {}),
        ],
        meter_provider=provider,
    )
    points = _points(reader)
    assert points == {("graphtap.dead_letters", (("reason", "malformed_event"),)): 2}
    assert {metric.exported_name for metric in METRICS} >= {name for name, _ in points}
    provider.shutdown()


def test_the_web_app_exports_processor_partition_and_control_plane_figures() -> None:
    """`graphtap serve` hands `observe_metrics` all three sources of one instance."""
    from graphtap.hosts.commands.serve import _observations
    from graphtap.processing.partitions import PartitionMeter
    from graphtap.processing.summary import Summary

    meter = PartitionMeter()
    meter.observe("3", last_sequence=10, last_enqueued=25)

    class Service:
        def summary(self) -> Summary:
            return Summary(events=2, notifications=2, verdicts=2)

        def partitions(self) -> Any:
            return meter.snapshot()

    class Plane:
        def observations(self) -> Any:
            yield "subscription.expiry_seconds", 3600.0, {"resource": "/chats/getAllMessages"}

    names = {name: value for name, value, _ in _observations(Service(), Plane())}  # type: ignore[arg-type]
    assert names["events"] == 2
    assert names["partition.lag"] == 15
    assert names["subscription.expiry_seconds"] == 3600.0
    without_plane = {name for name, _, _ in _observations(Service(), None)}  # type: ignore[arg-type]
    assert "subscription.expiry_seconds" not in without_plane
