"""Log Analytics, workspace-based Application Insights, and diagnostic settings into them."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.cdk import (
    ApplicationInsights,
    Construct,
    LogAnalyticsWorkspace,
    MonitorDiagnosticSetting,
    MonitorDiagnosticSettingEnabledLog,
    MonitorDiagnosticSettingEnabledMetric,
)
from stacks.constructs import Placement


@dataclass(frozen=True)
class MonitoringProps:
    placement: Placement
    workspace_name: str
    app_insights_name: str
    retention_days: int


class Monitoring(Construct):
    """Where every log and metric of the environment goes."""

    def __init__(self, scope: Construct, id_: str, props: MonitoringProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.workspace = LogAnalyticsWorkspace(
            self,
            "workspace",
            name=props.workspace_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            sku="PerGB2018",
            retention_in_days=props.retention_days,
            tags=dict(where.tags),
        )
        self.app_insights = ApplicationInsights(
            self,
            "app_insights",
            name=props.app_insights_name,
            location=where.location,
            resource_group_name=where.resource_group_name,
            application_type="other",
            workspace_id=self.workspace.id,
            retention_in_days=props.retention_days,
            tags=dict(where.tags),
        )

    def diagnose(
        self, id_: str, target_resource_id: str, *, logs: bool = True, metric: str = "AllMetrics"
    ) -> MonitorDiagnosticSetting:
        """Send `target_resource_id`'s logs (all categories) and metrics to the workspace."""
        return MonitorDiagnosticSetting(
            self,
            f"diagnostics_{id_}",
            name="to-log-analytics",
            target_resource_id=target_resource_id,
            log_analytics_workspace_id=self.workspace.id,
            enabled_log=[MonitorDiagnosticSettingEnabledLog(category_group="allLogs")]
            if logs
            else None,
            enabled_metric=[MonitorDiagnosticSettingEnabledMetric(category=metric)],
        )
