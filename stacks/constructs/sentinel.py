"""Microsoft Sentinel on the environment's workspace: the onboarding, an analytics rule that
raises an incident for every high or critical verdict, and a workbook of verdicts, findings,
dead letters and subscription health. Every query is a file in `stacks/kql/`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stacks.cdk import (
    ApplicationInsightsWorkbook,
    Construct,
    Fn,
    ITerraformDependable,
    SentinelAlertRuleScheduled,
    SentinelAlertRuleScheduledAlertDetailsOverride,
    SentinelAlertRuleScheduledEntityMapping,
    SentinelAlertRuleScheduledEntityMappingFieldMapping,
    SentinelAlertRuleScheduledEventGrouping,
    SentinelAlertRuleScheduledIncident,
    SentinelAlertRuleScheduledIncidentGrouping,
    SentinelLogAnalyticsWorkspaceOnboarding,
)
from stacks.constructs import Placement
from stacks.queries import query

ANALYTICS_RULE_QUERY = "sentinel-high-severity-verdicts"
#: Custom detail -> the query's column. The conversation groups alerts into incidents.
CUSTOM_DETAILS = {
    "ConversationId": "ConversationId",
    "MessageId": "MessageId",
    "VerdictKey": "VerdictKey",
    "VerdictSeverity": "Severity",
    "FindingTypes": "FindingTypes",
}
#: Sentinel's Account entity, identified by the sender's Entra object id.
SENDER_ENTITY = ("Account", "AadUserId", "SenderId")
WORKSPACES = "microsoft.operationalinsights/workspaces"


@dataclass(frozen=True)
class WorkbookPanel:
    """One query of the workbook and how it is drawn."""

    query: str  # a file in stacks/kql/
    title: str
    visualization: str  # the workbook's: timechart, barchart, table, ...


WORKBOOK: tuple[WorkbookPanel, ...] = (
    WorkbookPanel("workbook-verdicts-by-severity", "Verdicts by severity", "timechart"),
    WorkbookPanel("workbook-findings-by-type", "Findings by type and severity", "barchart"),
    WorkbookPanel("workbook-top-senders", "Top senders", "table"),
    WorkbookPanel("workbook-top-conversations", "Top conversations", "table"),
    WorkbookPanel("workbook-dead-letters-by-reason", "Dead letters by reason", "timechart"),
    WorkbookPanel("workbook-subscription-health", "Subscription health", "table"),
)


@dataclass(frozen=True)
class SentinelProps:
    placement: Placement
    workspace_id: str
    environment: str
    workbook_name: str  # a GUID
    #: What the queries read (the verdict table and the `GraphtapVerdicts` function): Sentinel
    #: checks a rule's query when it is created.
    verdicts: Sequence[ITerraformDependable]


class Sentinel(Construct):
    """Sentinel on the workspace, its analytics rule and its workbook."""

    def __init__(self, scope: Construct, id_: str, props: SentinelProps) -> None:
        super().__init__(scope, id_)
        where = props.placement
        self.onboarding = SentinelLogAnalyticsWorkspaceOnboarding(
            self, "onboarding", workspace_id=props.workspace_id
        )
        entity, identifier, column = SENDER_ENTITY
        self.analytics_rule = SentinelAlertRuleScheduled(
            self,
            "high_severity_verdicts",
            name="graphtap-high-severity-verdicts",
            display_name="graphtap: high or critical DLP verdict",
            description=(
                "A Teams or Outlook message graphtap rated high or critical. The incident groups "
                "the verdicts of one conversation; each alert names the sender (Account), the "
                "message and the finding types. Findings carry masked previews and keyed hashes "
                "only: use `graphtap findings` or the GraphtapVerdicts function for details."
            ),
            log_analytics_workspace_id=self.onboarding.workspace_id,
            query=query(ANALYTICS_RULE_QUERY),
            severity="High",
            query_frequency="PT5M",
            query_period="PT5M",
            trigger_operator="GreaterThan",
            trigger_threshold=0,
            tactics=["Exfiltration"],
            suppression_enabled=False,
            event_grouping=SentinelAlertRuleScheduledEventGrouping(
                aggregation_method="AlertPerResult"
            ),
            entity_mapping=[
                SentinelAlertRuleScheduledEntityMapping(
                    entity_type=entity,
                    field_mapping=[
                        SentinelAlertRuleScheduledEntityMappingFieldMapping(
                            identifier=identifier, column_name=column
                        )
                    ],
                )
            ],
            custom_details=CUSTOM_DETAILS,
            alert_details_override=[
                SentinelAlertRuleScheduledAlertDetailsOverride(
                    display_name_format="graphtap: {{Severity}} verdict in {{ConversationId}}",
                    description_format="Finding types: {{FindingTypes}}",
                )
            ],
            incident=SentinelAlertRuleScheduledIncident(
                create_incident_enabled=True,
                grouping=SentinelAlertRuleScheduledIncidentGrouping(
                    enabled=True,
                    entity_matching_method="Selected",
                    by_custom_details=["ConversationId"],
                    lookback_duration="PT5H",
                    reopen_closed_incidents=False,
                ),
            ),
            depends_on=list(props.verdicts),
        )
        source = Fn.lower(props.workspace_id)  # the workbook wants the id in lowercase
        self.workbook = ApplicationInsightsWorkbook(
            self,
            "workbook",
            name=props.workbook_name,
            display_name=f"graphtap {props.environment}: verdicts and health",
            location=where.location,
            resource_group_name=where.resource_group_name,
            category="sentinel",
            source_id=source,
            data_json=json.dumps(workbook(props.environment, source), indent=2),
            tags=dict(where.tags),
            depends_on=[self.onboarding, *props.verdicts],
        )


def workbook(environment: str, workspace_id: str) -> dict[str, Any]:
    """The workbook's serialized form: a time range, then one panel per `WORKBOOK` query."""
    items: list[dict[str, Any]] = [
        {
            "type": 1,
            "name": "about",
            "content": {
                "json": (
                    f"## graphtap `{environment}`\n"
                    "Verdicts and findings (masked previews and hashes, never values), dead "
                    "letters by reason and the Graph subscriptions' health. README: *Sentinel "
                    "and alerts*."
                )
            },
        },
        {
            "type": 9,
            "name": "parameters",
            "content": {
                "version": "KqlParameterItem/1.0",
                "style": "pills",
                "queryType": 0,
                "resourceType": WORKSPACES,
                "parameters": [
                    {
                        "id": "9f1c2a8e-4b7d-4e0a-9d53-6c1f0e2b7a41",
                        "version": "KqlParameterItem/1.0",
                        "name": "TimeRange",
                        "label": "Time range",
                        "type": 4,
                        "isRequired": True,
                        "value": {"durationMs": 86_400_000},
                        "typeSettings": {
                            "allowCustom": True,
                            "selectableValues": [
                                {"durationMs": ms}
                                for ms in (3_600_000, 14_400_000, 86_400_000, 604_800_000)
                            ],
                        },
                    }
                ],
            },
        },
    ]
    items.extend(
        {
            "type": 3,
            "name": panel.query,
            "content": {
                "version": "KqlItem/1.0",
                "title": panel.title,
                "query": query(panel.query),
                "size": 0,
                "timeContextFromParameter": "TimeRange",
                "queryType": 0,
                "resourceType": WORKSPACES,
                "visualization": panel.visualization,
            },
        }
        for panel in WORKBOOK
    )
    return {
        "version": "Notebook/1.0",
        "items": items,
        "isLocked": False,
        "fallbackResourceIds": [workspace_id],
    }
