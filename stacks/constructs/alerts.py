"""Operator alerts: one action group (the environment's emails and webhook) and a log alert
per condition an operator must act on. Each rule's query is a file in `stacks/kql/` over
what the runtime exports (`graphtap.telemetry.METRICS`) and the Event Hubs platform metrics;
the thresholds come from the environment's `[alerts]` table."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.cdk import (
    Construct,
    MonitorActionGroup,
    MonitorActionGroupEmailReceiver,
    MonitorActionGroupWebhookReceiver,
    MonitorScheduledQueryRulesAlertV2,
    MonitorScheduledQueryRulesAlertV2Action,
    MonitorScheduledQueryRulesAlertV2Criteria,
    MonitorScheduledQueryRulesAlertV2CriteriaDimension,
)
from stacks.config import AlertsConfig
from stacks.constructs import Placement
from stacks.queries import query


def duration(minutes: int) -> str:
    """ISO 8601, as Azure Monitor spells a window: PT15M, PT1H, P1D."""
    if minutes % 1440 == 0:
        return f"P{minutes // 1440}D"
    return f"PT{minutes // 60}H" if minutes % 60 == 0 else f"PT{minutes}M"


@dataclass(frozen=True)
class AlertRule:
    """One condition: its query, how the result is aggregated over the window, and the test."""

    condition: str  # the rule name's suffix
    query: str  # a file in stacks/kql/
    description: str
    severity: int  # Azure Monitor: 0 critical, 1 error, 2 warning
    window_minutes: int
    frequency: str
    aggregation: str  # Count (rows), Minimum, Maximum, Total, Average of `measure`
    operator: str
    threshold: float
    measure: str | None = None
    dimensions: tuple[str, ...] = ()  # one alert per value of each


def alert_rules(config: AlertsConfig) -> tuple[AlertRule, ...]:
    """The five conditions, with the environment's thresholds."""
    return (
        AlertRule(
            "subscription-expiry",
            "alert-subscription-expiry",
            f"A Graph subscription expires within {config.expiry_hours} h: its renewals are "
            "failing. Read the status page's control-plane errors; see README *Sentinel and "
            "alerts*.",
            severity=1,
            window_minutes=15,
            frequency="PT15M",
            aggregation="Minimum",
            operator="LessThan",
            threshold=config.expiry_hours,
            measure="HoursLeft",
            dimensions=("Resource",),
        ),
        AlertRule(
            "renewal-failures",
            "alert-renewal-failures",
            "The control plane failed to renew, re-key or create a subscription. It retries "
            "every round; see the status page's errors for Graph's answer and its hint.",
            severity=2,
            window_minutes=15,
            frequency="PT15M",
            aggregation="Total",
            operator="GreaterThan",
            threshold=0,
            measure="Failures",
            dimensions=("Action",),
        ),
        AlertRule(
            "partition-lag",
            "alert-partition-lag",
            f"A notifications hub partition stayed over {config.lag_events} events behind for "
            "15 minutes: the processor is too slow, stuck, or the partition is unowned.",
            severity=2,
            window_minutes=15,
            frequency="PT5M",
            aggregation="Minimum",
            operator="GreaterThan",
            threshold=config.lag_events,
            measure="Lag",
            dimensions=("Partition",),
        ),
        AlertRule(
            "dead-letter-rate",
            "alert-dead-letter-rate",
            f"Over {config.dead_letter_percent:g}% of the last hour's items were dead-lettered. "
            "`graphtap deadletters list` says why; README *Dead letters, for operators*.",
            severity=2,
            window_minutes=60,
            frequency="PT15M",
            aggregation="Maximum",
            operator="GreaterThan",
            threshold=config.dead_letter_percent,
            measure="DeadLetterPercent",
        ),
        AlertRule(
            "no-verdicts",
            "alert-no-verdicts",
            f"The Event Hubs namespace received messages for {config.silence_minutes} minutes "
            "and no verdict was committed: the processor is down, stuck or failing every batch.",
            severity=1,
            window_minutes=config.silence_minutes,
            frequency="PT15M",
            aggregation="Count",
            operator="GreaterThan",
            threshold=0,
        ),
    )


@dataclass(frozen=True)
class AlertsProps:
    placement: Placement
    action_group_name: str
    rule_stem: str  # each rule is named `<stem>-<condition>`
    short_name: str  # what a message names the sender as (at most 12 characters)
    workspace_id: str
    config: AlertsConfig


class Alerts(Construct):
    """The action group and one scheduled query rule per `alert_rules` condition."""

    def __init__(self, scope: Construct, id_: str, props: AlertsProps) -> None:
        super().__init__(scope, id_)
        where, config = props.placement, props.config
        webhook = config.webhook_url
        self.action_group = MonitorActionGroup(
            self,
            "action_group",
            name=props.action_group_name,
            resource_group_name=where.resource_group_name,
            short_name=props.short_name[:12],
            email_receiver=[
                MonitorActionGroupEmailReceiver(
                    name=f"email-{index}", email_address=address, use_common_alert_schema=True
                )
                for index, address in enumerate(config.emails)
            ],
            webhook_receiver=[
                MonitorActionGroupWebhookReceiver(
                    name="webhook", service_uri=webhook, use_common_alert_schema=True
                )
            ]
            if webhook is not None
            else None,
            tags=dict(where.tags),
        )
        self.rules: dict[str, MonitorScheduledQueryRulesAlertV2] = {}
        for rule in alert_rules(config):
            self.rules[rule.condition] = MonitorScheduledQueryRulesAlertV2(
                self,
                rule.condition.replace("-", "_"),
                name=f"{props.rule_stem}-{rule.condition}",
                display_name=f"graphtap: {rule.condition.replace('-', ' ')}",
                description=rule.description,
                location=where.location,
                resource_group_name=where.resource_group_name,
                scopes=[props.workspace_id],
                severity=rule.severity,
                window_duration=duration(rule.window_minutes),
                evaluation_frequency=rule.frequency,
                auto_mitigation_enabled=True,
                criteria=[
                    MonitorScheduledQueryRulesAlertV2Criteria(
                        query=query(rule.query),
                        time_aggregation_method=rule.aggregation,
                        metric_measure_column=rule.measure,
                        operator=rule.operator,
                        threshold=rule.threshold,
                        dimension=[
                            MonitorScheduledQueryRulesAlertV2CriteriaDimension(
                                name=name, operator="Include", values=["*"]
                            )
                            for name in rule.dimensions
                        ]
                        or None,
                    )
                ],
                action=MonitorScheduledQueryRulesAlertV2Action(
                    action_groups=[self.action_group.id]
                ),
                tags=dict(where.tags),
            )
