"""Logs, traces and metrics: structured, and free of message content and secrets.

Logs are one JSON object per line carrying a fixed set of context fields (subscription id,
partition, sequence number, counts, error types). The formatter writes only those fields,
so a value passed by mistake in `extra` never reaches the output; message text is the
logger's own constant string, never a notification's content.

With `APPLICATIONINSIGHTS_CONNECTION_STRING` set (App Service and Functions get it from the
stack), OpenTelemetry traces, metrics and these logs are exported to Application Insights
through azure-monitor-opentelemetry; without it nothing is exported.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import metrics, trace

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SERVICE_NAME = "graphtap"

#: The only record attributes that reach a log line besides time, level, logger and message.
CONTEXT_FIELDS = (
    "subscription_id",
    "partition",
    "sequence_number",
    "events",
    "notifications",
    "verdicts",
    "dead_letters",
    "attempt",
    "delay",
    "reason",
    "severity",
    "findings",
    "error",
    "state",
    "port",
)

tracer = trace.get_tracer(SERVICE_NAME)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__  # the type only: no message text
        return json.dumps(line, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for graphtap's loggers; the Azure SDKs stay at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("graphtap").setLevel(level.upper())


def configure_azure_monitor(
    settings: Mapping[str, str] = os.environ,
    *,
    configure: Callable[..., None] | None = None,
) -> bool:
    """Export to Application Insights when its connection string is set; say whether it is."""
    connection_string = settings.get(CONNECTION_STRING)
    if not connection_string:
        return False
    if configure is None:
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure = configure_azure_monitor
    configure(
        connection_string=connection_string,
        logger_name="graphtap",
        enable_live_metrics=False,
    )
    return True


Observations = Callable[[], Iterable[tuple[str, float, Mapping[str, str]]]]


@dataclass(frozen=True)
class Metric:
    """One instrument graphtap exports, as `graphtap.<name>` (Application Insights' `AppMetrics`
    `Name`, its attributes in `Properties`). The stack's alerts and workbook query exactly these
    names and attributes; a stack test holds every query to this list."""

    name: str
    kind: Literal["counter", "gauge"]  # counters: running totals (exported as deltas)
    attributes: tuple[str, ...]
    description: str

    @property
    def exported_name(self) -> str:
        return f"{SERVICE_NAME}.{self.name}"


METRICS: tuple[Metric, ...] = (
    Metric("events", "counter", (), "events committed"),
    Metric("notifications", "counter", (), "notifications processed"),
    Metric("verdicts", "counter", (), "new verdicts committed"),
    Metric("findings", "counter", ("type",), "findings committed, by type"),
    Metric("dead_letters", "counter", ("reason",), "items dead-lettered, by reason"),
    Metric(
        "partition.lag",
        "gauge",
        ("partition",),
        "events enqueued after the last committed one, per partition this instance owns",
    ),
    Metric(
        "subscription.expiry_seconds",
        "gauge",
        ("resource",),
        "seconds until a Graph subscription expires (negative: expired)",
    ),
    Metric(
        "subscription.renewal_failures",
        "counter",
        ("action",),
        "failed writes that keep a subscription alive (renew, rekey, create)",
    ),
)


def observe_metrics(
    read: Observations, *, meter_provider: metrics.MeterProvider | None = None
) -> None:
    """OpenTelemetry observable instruments for every `METRICS` entry, read from the hosts'
    own bookkeeping at each collection.

    `read` yields (name, value, attributes): counters as running totals, as `Summary` keeps
    them, so nothing is counted twice; gauges as their current value. Only a metric's declared
    attributes are exported, so a query built on `METRICS` never meets another.
    """
    meter = metrics.get_meter(SERVICE_NAME, meter_provider=meter_provider)
    for metric in METRICS:

        def callback(
            options: metrics.CallbackOptions, metric: Metric = metric
        ) -> Iterable[metrics.Observation]:
            return [
                metrics.Observation(
                    value, {key: attributes[key] for key in metric.attributes if key in attributes}
                )
                for name, value, attributes in read()
                if name == metric.name
            ]

        create = (
            meter.create_observable_counter
            if metric.kind == "counter"
            else meter.create_observable_gauge
        )
        create(metric.exported_name, callbacks=[callback], description=metric.description)
