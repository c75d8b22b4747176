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
from typing import Any

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


def observe_counters(
    read: Observations, *, meter_provider: metrics.MeterProvider | None = None
) -> None:
    """OpenTelemetry observable counters read from the processor's own bookkeeping.

    `read` yields (name, value, attributes); values are running totals, as `Summary` keeps
    them, so nothing is counted twice.
    """
    meter = metrics.get_meter(SERVICE_NAME, meter_provider=meter_provider)
    names = ("events", "notifications", "verdicts", "findings", "dead_letters")
    for name in names:

        def callback(
            options: metrics.CallbackOptions, name: str = name
        ) -> Iterable[metrics.Observation]:
            return [
                metrics.Observation(value, dict(attributes))
                for metric, value, attributes in read()
                if metric == name
            ]

        meter.create_observable_counter(
            f"graphtap.{name}", callbacks=[callback], description=f"{name} processed"
        )
