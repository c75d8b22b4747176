"""Verdicts in Log Analytics: the custom table, the data collection rule that feeds it through
the Logs Ingestion API, the runtime's one grant on that rule, and the function people query.

The table's and the stream's columns are the runtime's `VERDICT_COLUMNS`, so the rows the
sink writes and the schema Azure checks cannot drift apart. azurerm 4.55 cannot create a
`Direct` rule with its own ingestion endpoint, so a data collection endpoint serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphtap.processing.sinks.loganalytics import VERDICT_COLUMNS, VERDICT_STREAM, VERDICT_TABLE
from stacks.cdk import (
    Construct,
    LogAnalyticsSavedSearch,
    LogAnalyticsWorkspaceTableCustomLog,
    LogAnalyticsWorkspaceTableCustomLogColumn,
    MonitorDataCollectionEndpoint,
    MonitorDataCollectionRule,
    MonitorDataCollectionRuleDataFlow,
    MonitorDataCollectionRuleDestinations,
    MonitorDataCollectionRuleDestinationsLogAnalytics,
    MonitorDataCollectionRuleStreamDeclaration,
    MonitorDataCollectionRuleStreamDeclarationColumn,
)
from stacks.constructs import DeploymentFacts, Placement
from stacks.constructs.identity import grant
from stacks.queries import query

MONITORING_METRICS_PUBLISHER = "Monitoring Metrics Publisher"
#: The workspace function that collapses replays (stacks/kql/verdicts.kql).
VERDICTS_FUNCTION = "GraphtapVerdicts"
WORKSPACE_DESTINATION = "workspace"


@dataclass(frozen=True)
class LogIngestionProps:
    placement: Placement
    workspace_id: str
    endpoint_name: str
    rule_name: str
    runtime_principal_id: str
    retention_days: int


class LogIngestion(Construct):
    """`GraphtapVerdicts_CL`, the rule and endpoint that feed it, and `GraphtapVerdicts`."""

    def __init__(self, scope: Construct, id_: str, props: LogIngestionProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.table = LogAnalyticsWorkspaceTableCustomLog(
            self,
            "verdicts_table",
            name=VERDICT_TABLE,
            workspace_id=props.workspace_id,
            description="One row per graphtap verdict: ids, severity, masked findings; no content",
            plan="Analytics",
            retention_in_days=props.retention_days,
            column=[
                LogAnalyticsWorkspaceTableCustomLogColumn(
                    name=c.name, type=c.type, description=c.description
                )
                for c in VERDICT_COLUMNS
            ],
        )
        self.endpoint = MonitorDataCollectionEndpoint(
            self,
            "endpoint",
            name=props.endpoint_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            description="Logs Ingestion API endpoint for graphtap verdicts",
            tags=dict(where.tags),
        )
        self.rule = MonitorDataCollectionRule(
            self,
            "rule",
            name=props.rule_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            data_collection_endpoint_id=self.endpoint.id,
            description="graphtap verdicts into GraphtapVerdicts_CL, unchanged",
            stream_declaration=[
                MonitorDataCollectionRuleStreamDeclaration(
                    stream_name=VERDICT_STREAM,
                    column=[
                        MonitorDataCollectionRuleStreamDeclarationColumn(name=c.name, type=c.type)
                        for c in VERDICT_COLUMNS
                    ],
                )
            ],
            destinations=MonitorDataCollectionRuleDestinations(
                log_analytics=[
                    MonitorDataCollectionRuleDestinationsLogAnalytics(
                        name=WORKSPACE_DESTINATION, workspace_resource_id=props.workspace_id
                    )
                ]
            ),
            data_flow=[
                MonitorDataCollectionRuleDataFlow(
                    streams=[VERDICT_STREAM],
                    destinations=[WORKSPACE_DESTINATION],
                    transform_kql="source",
                    output_stream=f"Custom-{VERDICT_TABLE}",
                )
            ],
            depends_on=[self.table],
            tags=dict(where.tags),
        )
        # The runtime may write rows through this rule, and nothing else in Azure Monitor.
        self.publisher = grant(
            self,
            "publish_verdicts",
            props.runtime_principal_id,
            MONITORING_METRICS_PUBLISHER,
            self.rule.id,
        )
        self.function = LogAnalyticsSavedSearch(
            self,
            "verdicts_function",
            name=VERDICTS_FUNCTION,
            display_name="graphtap verdicts, one row per verdict key",
            category="graphtap",
            function_alias=VERDICTS_FUNCTION,
            log_analytics_workspace_id=props.workspace_id,
            query=query("verdicts"),
            depends_on=[self.table],
        )
        self.deployment: DeploymentFacts = {
            "logs_ingestion_endpoint": self.endpoint.logs_ingestion_endpoint,
            "logs_dcr_id": self.rule.immutable_id,
            "logs_stream": VERDICT_STREAM,
        }


#: The facts of an environment that sends no verdicts to Log Analytics.
NO_LOG_INGESTION: DeploymentFacts = {
    "logs_ingestion_endpoint": None,
    "logs_dcr_id": None,
    "logs_stream": None,
}
