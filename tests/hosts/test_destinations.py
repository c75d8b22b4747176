"""The Azure hosts build their verdict destinations from the deployment: the findings hub,
the Log Analytics table, or both behind one fan-out, with tokens for the cloud's monitor."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from graphtap.deployment import Deployment
from graphtap.hosts.azure import AzureServiceOptions, open_destinations
from graphtap.inspection import Policy
from graphtap.processing.sinks.eventhubs import EventHubsVerdictSink
from graphtap.processing.sinks.fanout import FanOutVerdicts
from graphtap.processing.sinks.loganalytics import VERDICT_STREAM, LogAnalyticsVerdictSink
from tests.fakes.azure_transport import TokenCredential
from tests.hosts.test_deploy_app import deployment as app_deployment

LOGS = {
    "logs_ingestion_endpoint": "https://dce-gtap-prod-weu-1a2b.westeurope-1.ingest.monitor.azure.com",
    "logs_dcr_id": "dcr-0123456789abcdef",
    "logs_stream": VERDICT_STREAM,
}


# The production environment, so its Log Analytics target is named for it.
deployment = partial(app_deployment, environment="prod")


def opened(target: Deployment, tmp_path: Path) -> Any:
    async def build() -> Any:
        sink = open_destinations(
            target, TokenCredential(), AzureServiceOptions(Policy.default(), state_dir=tmp_path)
        )
        await sink.close()
        return sink

    return asyncio.run(build())


def test_a_deployment_from_before_the_choice_sends_to_the_hub(tmp_path: Path) -> None:
    assert isinstance(opened(deployment(), tmp_path), EventHubsVerdictSink)


def test_log_analytics_alone(tmp_path: Path) -> None:
    sink = opened(deployment(findings_destinations="log_analytics", **LOGS), tmp_path)
    assert isinstance(sink, LogAnalyticsVerdictSink)
    assert sink.target.rule_id == LOGS["logs_dcr_id"]
    assert sink.target.environment == "prod"
    assert sink.target.audience == "https://monitor.azure.com"


def test_both_fan_out_to_the_hub_and_the_table(tmp_path: Path) -> None:
    sink = opened(deployment(findings_destinations="findings_hub,log_analytics", **LOGS), tmp_path)
    assert isinstance(sink, FanOutVerdicts)
    assert [type(d) for d in sink.destinations] == [EventHubsVerdictSink, LogAnalyticsVerdictSink]


def test_tokens_are_for_the_clouds_monitor(tmp_path: Path) -> None:
    target = deployment(
        findings_destinations="log_analytics",
        cloud="usgov",
        **{
            **LOGS,
            "logs_ingestion_endpoint": "https://dce.usgovvirginia-1.ingest.monitor.azure.us",
        },
    )
    sink = opened(target, tmp_path)
    assert sink.target.audience == "https://monitor.azure.us"
