"""Sentinel and the operator alerts: every query the stacks deploy is a file in stacks/kql/, it
parses, and each name it uses is one that exists: the runtime's exported metrics and their
attributes (found by running the runtime's own producers), the verdict table's columns (the
runtime's `VERDICT_COLUMNS`), the fields of a finding, the policy's severities, and the
platform metrics of a resource the stack sends to the workspace."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from graphtap.inspection.findings import Finding
from graphtap.inspection.policy import SEVERITIES
from graphtap.localhub import LocalHub
from graphtap.processing.partitions import PartitionMeter, lag_observations
from graphtap.processing.sinks.loganalytics import VERDICT_COLUMNS, VERDICT_TABLE
from graphtap.processing.summary import Summary
from graphtap.subscriptions.clock import VirtualClock
from graphtap.telemetry import CONTEXT_FIELDS, METRICS
from stacks.config import ConfigError, load
from stacks.constructs.alerts import alert_rules
from stacks.constructs.log_ingestion import VERDICTS_FUNCTION
from stacks.constructs.sentinel import CUSTOM_DETAILS, SENDER_ENTITY, WORKBOOK
from stacks.queries import KQL_DIR, query
from tests.fakes.graph import FakeGraph
from tests.stacks.conftest import SynthesizedApp, SynthesizedStack
from tests.stacks.kql import KqlError, parse
from tests.stacks.test_stacks_config import DEV, problems_of, write
from tests.subscriptions.conftest import START, Bench, bootstrapped_vault

#: Azure's own tables and the columns these queries may read (Azure Monitor's schemas).
APP_METRICS = {"TimeGenerated", "Name", "Sum", "Min", "Max", "ItemCount", "Properties"}
APP_TRACES = {"TimeGenerated", "Message", "SeverityLevel", "Properties"}
AZURE_METRICS = {
    "TimeGenerated",
    "ResourceProvider",
    "ResourceId",
    "MetricName",
    "Total",
    "Count",
    "Maximum",
    "Minimum",
    "Average",
}
#: Event Hubs namespace metrics exported by a diagnostic setting's AllMetrics.
EVENT_HUBS_METRICS = {"IncomingMessages", "OutgoingMessages", "IncomingBytes", "OutgoingBytes"}
VERDICT_COLUMN_NAMES = {column.name for column in VERDICT_COLUMNS}


def runtime_observations(tmp_path: Path) -> list[tuple[str, float, Mapping[str, str]]]:
    """What the runtime's producers hand `telemetry.observe_metrics`, run for real: the
    processor's summary, the partition meter and a control plane that created subscriptions
    against fake Graph and then failed to renew them."""
    summary = Summary(events=3, notifications=5, verdicts=4)
    summary.findings_by_type = Counter({"password": 2})
    summary.dead_letters_by_reason = Counter({"malformed_event": 1})
    meter = PartitionMeter()
    meter.observe("0", last_sequence=4, last_enqueued=9)

    clock = VirtualClock(START)
    hub = LocalHub(tmp_path / "hub", partitions=1)
    bench = Bench(clock, FakeGraph(clock, hub=hub), bootstrapped_vault(), hub)

    async def control_plane() -> list[tuple[str, float, Mapping[str, str]]]:
        plane = bench.control_plane()
        await plane.reconcile()
        clock.advance(dt.timedelta(days=3).total_seconds())
        bench.graph.fault_rate = 1.0
        await plane.renew_due()
        return list(plane.observations())

    return [
        *summary.observations(),
        *lag_observations(meter.snapshot()),
        *asyncio.run(control_plane()),
    ]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Exported metric name -> the attribute keys it is exported with."""
    declared = {metric.name: metric for metric in METRICS}
    found: dict[str, set[str]] = {}
    for name, _, attributes in runtime_observations(tmp_path_factory.mktemp("runtime")):
        assert name in declared, f"the runtime observes {name!r}, which METRICS does not export"
        metric = declared[name]
        assert set(attributes) == set(metric.attributes), (name, attributes)
        found.setdefault(metric.exported_name, set()).update(attributes)
    missing = {m.exported_name for m in METRICS} - set(found)
    assert not missing, f"declared but never observed: {missing}"
    return found


def deployed_queries(stack: SynthesizedStack) -> Iterator[tuple[str, str]]:
    """(where, query text) for every query the stack deploys."""
    for key, rule in stack.resources("azurerm_sentinel_alert_rule_scheduled").items():
        yield f"analytics rule {key}", rule["query"]
    for key, workbook in stack.resources("azurerm_application_insights_workbook").items():
        for item in json.loads(workbook["data_json"])["items"]:
            if item["type"] == 3:
                yield f"workbook {key} {item['name']}", item["content"]["query"]
    for key, rule in stack.resources("azurerm_monitor_scheduled_query_rules_alert_v2").items():
        for criteria in rule["criteria"]:
            yield f"alert {key}", criteria["query"]
    for key, search in stack.resources("azurerm_log_analytics_saved_search").items():
        yield f"function {key}", search["query"]


def workspace_sources(stack: SynthesizedStack) -> dict[str, set[str]]:
    """The tables and functions this stack's workspace holds, each with its columns."""
    sources = {"AppMetrics": APP_METRICS, "AppTraces": APP_TRACES}
    insights = stack.resources("azurerm_application_insights")
    assert all("workspace_id" in app for app in insights.values()), "workspace-based only"
    namespaces = stack.resources("azurerm_eventhub_namespace")
    diagnosed = [
        setting
        for setting in stack.resources("azurerm_monitor_diagnostic_setting").values()
        if any(
            f"azurerm_eventhub_namespace.{key}.id" in setting["target_resource_id"]
            for key in namespaces
        )
        and any(metric.get("category") == "AllMetrics" for metric in setting["enabled_metric"])
    ]
    if diagnosed:
        sources["AzureMetrics"] = AZURE_METRICS
    tables = stack.resources("azurerm_log_analytics_workspace_table_custom_log")
    for table in tables.values():
        sources[table["name"]] = {column["name"] for column in table["column"]}
    for search in stack.resources("azurerm_log_analytics_saved_search").values():
        sources[search["function_alias"]] = sources.get(VERDICT_TABLE, set())
    return sources


def check(text: str, sources: Mapping[str, set[str]], emitted: Mapping[str, set[str]]) -> list[str]:
    """Every name `text` uses that does not exist; empty when the query is sound."""
    try:
        parsed = parse(text)
    except KqlError as error:
        return [f"does not parse: {error}"]
    problems = [f"unknown table or function {s}" for s in parsed.sources() - set(sources)]
    known = set(sources) | parsed.defined()
    for source in parsed.sources() & set(sources):
        known |= sources[source]
    problems += [f"unknown column {name}" for name in parsed.pascal_identifiers() - known]
    metrics = parsed.compared("Name")
    problems += [f"the runtime exports no metric {name}" for name in metrics - set(emitted)]
    if "AppMetrics" in parsed.sources():
        attributes = set().union(*(emitted.get(name, set()) for name in metrics))
        problems += [
            f"no metric it reads is exported with attribute {key}"
            for key in parsed.fields_of("Properties") - attributes
        ]
    if "AppTraces" in parsed.sources():
        problems += [
            f"log records carry no field {key}"
            for key in parsed.fields_of("Properties") - set(CONTEXT_FIELDS)
        ]
    finding_fields = set(Finding("t", 1, 1, "****", (0,), "00").to_dict())
    problems += [
        f"a finding has no field {f}" for f in parsed.fields_of("Finding") - finding_fields
    ]
    problems += [f"no severity {s}" for s in parsed.compared("Severity") - set(SEVERITIES)]
    platform = parsed.compared("MetricName")
    problems += [f"Event Hubs exports no metric {m}" for m in platform - EVENT_HUBS_METRICS]
    return problems


def test_every_deployed_query_is_a_file_in_stacks_kql(synthesized: SynthesizedApp) -> None:
    files = {path.read_text(encoding="utf-8").strip() for path in KQL_DIR.glob("*.kql")}
    for stack in synthesized.stacks.values():
        for where, text in deployed_queries(stack):
            assert text.strip() in files, f"{stack.config.name}: {where} is not a stacks/kql file"


def test_every_deployed_query_reads_only_what_exists(
    synthesized: SynthesizedApp, emitted: dict[str, set[str]]
) -> None:
    checked = 0
    for stack in synthesized.stacks.values():
        sources = workspace_sources(stack)
        for where, text in deployed_queries(stack):
            assert check(text, sources, emitted) == [], f"{stack.config.name}: {where}"
            checked += 1
    assert checked >= 3 * 5 + 2 * (1 + len(WORKBOOK) + 1)  # alerts; rule, workbook, function


def test_every_query_file_parses_and_is_deployed(synthesized: SynthesizedApp) -> None:
    deployed = {
        text.strip() for stack in synthesized.stacks.values() for _, text in deployed_queries(stack)
    }
    for path in sorted(KQL_DIR.glob("*.kql")):
        text = path.read_text(encoding="utf-8")
        parse(text)
        assert text.strip() in deployed, f"{path.name} is deployed by no stack"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('AppMetrics | where Name == "graphtap.verdict"', "no metric graphtap.verdict"),
        (
            'AppMetrics | where Name == "graphtap.partition.lag" | extend P = Properties.part',
            "attribute part",
        ),
        ("AppTraces | extend R = tostring(Properties.content)", "no field content"),
        ("GraphtapVerdicts | project SenderUpn", "unknown column SenderUpn"),
        ('GraphtapVerdicts | where Severity == "severe"', "no severity severe"),
        (
            "GraphtapVerdicts | mv-expand Finding = Findings | extend V = Finding.value",
            "no field value",
        ),
        (
            'GraphtapVerdicts | mv-expand Finding = Findings | extend V = Finding["raw"]',
            "no field raw",
        ),
        ("Graphtapverdicts | take 1", "unknown table or function Graphtapverdicts"),
        ('AzureMetrics | where MetricName == "IncomingRequestz"', "no metric IncomingRequestz"),
        ("GraphtapVerdicts | where (FindingTotal > 0", "does not parse"),
        ('GraphtapVerdicts | where Severity == "high', "does not parse"),
    ],
)
def test_the_check_catches_a_name_that_does_not_exist(
    prod: SynthesizedStack, emitted: dict[str, set[str]], text: str, problem: str
) -> None:
    problems = check(text, workspace_sources(prod), emitted)
    assert any(problem in p for p in problems), problems


def test_the_verdict_function_is_only_queried_where_it_is_deployed(dev: SynthesizedStack) -> None:
    assert VERDICTS_FUNCTION not in workspace_sources(dev)
    problems = check(query("workbook-top-senders"), workspace_sources(dev), {})
    assert "unknown table or function GraphtapVerdicts" in problems


# -- Sentinel --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prod", "gov"])
def test_sentinel_environments_get_the_onboarding_rule_and_workbook(
    synthesized: SynthesizedApp, name: str
) -> None:
    stack = synthesized.stacks[name]
    assert stack.config.sentinel
    (onboarding_key,) = stack.resources("azurerm_sentinel_log_analytics_workspace_onboarding")
    (rule,) = stack.resources("azurerm_sentinel_alert_rule_scheduled").values()
    assert rule["log_analytics_workspace_id"] == (
        f"${{azurerm_sentinel_log_analytics_workspace_onboarding.{onboarding_key}.workspace_id}}"
    )
    assert rule["query"] == query("sentinel-high-severity-verdicts")
    assert rule["incident"]["create_incident_enabled"] is True
    entity, identifier, column = SENDER_ENTITY
    assert rule["entity_mapping"] == [
        {
            "entity_type": entity,
            "field_mapping": [{"identifier": identifier, "column_name": column}],
        }
    ]
    assert column == "SenderId"
    assert identifier == "AadUserId"
    assert rule["custom_details"] == CUSTOM_DETAILS
    assert rule["incident"]["grouping"]["by_custom_details"] == ["ConversationId"]
    # Every custom detail and entity column is one the rule's query returns.
    returned = parse(rule["query"]).defined() | VERDICT_COLUMN_NAMES
    assert set(CUSTOM_DETAILS.values()) | {column} <= returned
    # Sentinel checks the query at creation: the function and its table exist first.
    searches = stack.resources("azurerm_log_analytics_saved_search")
    (search_key,) = [k for k, s in searches.items() if s["function_alias"] == VERDICTS_FUNCTION]
    assert f"azurerm_log_analytics_saved_search.{search_key}" in rule["depends_on"]

    (workbook,) = stack.resources("azurerm_application_insights_workbook").values()
    assert workbook["category"] == "sentinel"
    panels = [item for item in json.loads(workbook["data_json"])["items"] if item["type"] == 3]
    assert [p["content"]["query"] for p in panels] == [query(p.query) for p in WORKBOOK]
    assert {p.query for p in WORKBOOK} >= {
        "workbook-verdicts-by-severity",
        "workbook-findings-by-type",
        "workbook-top-senders",
        "workbook-top-conversations",
        "workbook-dead-letters-by-reason",
        "workbook-subscription-health",
    }


def test_sentinel_off_adds_nothing_of_it(dev: SynthesizedStack) -> None:
    assert not dev.config.sentinel
    for kind in (
        "azurerm_sentinel_log_analytics_workspace_onboarding",
        "azurerm_sentinel_alert_rule_scheduled",
        "azurerm_application_insights_workbook",
    ):
        assert dev.resources(kind) == {}, kind


def test_the_workbook_name_is_a_stable_guid(synthesized: SynthesizedApp) -> None:
    names = [
        workbook["name"]
        for stack in synthesized.stacks.values()
        for workbook in stack.resources("azurerm_application_insights_workbook").values()
    ]
    assert len(names) == len(set(names)) == 2
    for name in names:
        assert str(uuid.UUID(name)) == name


# -- Operator alerts -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "prod", "gov"])
def test_every_environment_alerts_on_the_five_conditions(
    synthesized: SynthesizedApp, name: str
) -> None:
    stack = synthesized.stacks[name]
    config = stack.config.alerts
    ((group_key, group),) = stack.resources("azurerm_monitor_action_group").items()
    assert [r["email_address"] for r in group.get("email_receiver", [])] == list(config.emails)
    assert [r["service_uri"] for r in group.get("webhook_receiver", [])] == (
        [config.webhook_url] if config.webhook_url else []
    )
    stem = f"{stack.config.names.alert_rule}-"
    rules = {
        rule["name"].removeprefix(stem): rule
        for rule in stack.resources("azurerm_monitor_scheduled_query_rules_alert_v2").values()
    }
    expected = {rule.condition: rule for rule in alert_rules(config)}
    assert (
        set(rules)
        == set(expected)
        == {
            "subscription-expiry",
            "renewal-failures",
            "partition-lag",
            "dead-letter-rate",
            "no-verdicts",
        }
    )
    workspace = next(iter(stack.resources("azurerm_log_analytics_workspace")))
    for condition, rule in rules.items():
        want = expected[condition]
        assert rule["action"]["action_groups"] == [
            f"${{azurerm_monitor_action_group.{group_key}.id}}"
        ]
        assert rule["scopes"] == [f"${{azurerm_log_analytics_workspace.{workspace}.id}}"]
        (criteria,) = rule["criteria"]
        assert criteria["query"] == query(want.query)
        assert criteria["threshold"] == want.threshold
        # What the rule aggregates and splits by is a column its query returns.
        returned = parse(criteria["query"]).defined()
        if want.measure is not None:
            assert criteria["metric_measure_column"] in returned
        assert {d["name"] for d in criteria.get("dimension", [])} <= returned
    assert rules["subscription-expiry"]["criteria"][0]["threshold"] == config.expiry_hours
    assert rules["partition-lag"]["criteria"][0]["threshold"] == config.lag_events
    assert rules["dead-letter-rate"]["criteria"][0]["threshold"] == config.dead_letter_percent
    assert (
        rules["no-verdicts"]["window_duration"]
        == {
            15: "PT15M",
            30: "PT30M",
            45: "PT45M",
            60: "PT1H",
            120: "PT2H",
            180: "PT3H",
            240: "PT4H",
            300: "PT5H",
            360: "PT6H",
            1440: "P1D",
        }[config.silence_minutes]
    )


# -- configuration ---------------------------------------------------------------------------


ALERTS = 'emails = ["platform-alerts@contoso.com"]'


@pytest.mark.parametrize(
    ("old", "new", "key", "rule"),
    [
        ("sentinel = false", "sentinel = true", "sentinel", 'include "log_analytics"'),
        ("sentinel = false", 'sentinel = "yes"', "sentinel", "must be bool"),
        (ALERTS, "", "alerts", "at least one receiver"),
        (ALERTS, 'emails = ["ops"]', "alerts.emails", "email address"),
        (
            ALERTS,
            f'{ALERTS}\nwebhook_url = "http://hooks.contoso.com/x"',
            "alerts.webhook_url",
            "https",
        ),
        (
            ALERTS,
            f'{ALERTS}\nwebhook_url = "https://hooks.contoso.com/x?token=abc"',
            "alerts.webhook_url",
            "no credentials, query",
        ),
        (
            "silence_minutes = 120",
            "silence_minutes = 20",
            "alerts.silence_minutes",
            "log alert window",
        ),
        ("expiry_hours = 6", "expiry_hours = 48", "alerts.expiry_hours", "1-12"),
        ("lag_events = 1000", "lag_events = 10", "alerts.lag_events", "100-10000000"),
        (
            "dead_letter_percent = 10.0",
            "dead_letter_percent = 0.0",
            "alerts.dead_letter_percent",
            "above 0",
        ),
        (
            "dead_letter_percent = 10.0",
            'dead_letter_percent = "10%"',
            "alerts.dead_letter_percent",
            "must be float",
        ),
        ("lag_events = 1000", "lag_events = 1000\nlag = 5", "alerts.lag", "unknown key"),
    ],
)
def test_alert_and_sentinel_rules_name_file_key_and_rule(
    tmp_path: Path, old: str, new: str, key: str, rule: str
) -> None:
    assert old in DEV, old
    path = write(tmp_path, "dev", DEV.replace(old, new))
    problems = problems_of(path)
    assert any(k == key and rule in r for k, r in problems), problems


def test_sentinel_with_the_verdict_table_and_a_whole_percentage_load(tmp_path: Path) -> None:
    text = (
        DEV.replace("sentinel = false", "sentinel = true")
        .replace('destinations = ["findings_hub"]', 'destinations = ["log_analytics"]')
        .replace("dead_letter_percent = 10.0", "dead_letter_percent = 3")
        .replace(ALERTS, f'{ALERTS}\nwebhook_url = "https://alerts.contoso.com/graphtap"')
    )
    config = load(write(tmp_path, "dev", text))
    assert config.sentinel is True
    assert config.alerts.dead_letter_percent == 3.0
    assert config.alerts.webhook_url == "https://alerts.contoso.com/graphtap"


def test_defaults_apply_to_keys_left_out(tmp_path: Path) -> None:
    text = "\n".join(
        line
        for line in DEV.splitlines()
        if not line.startswith(
            ("expiry_hours", "lag_events", "dead_letter_percent", "silence_minutes", "sentinel")
        )
    )
    config = load(write(tmp_path, "dev", text))
    assert config.sentinel is False
    assert (config.alerts.expiry_hours, config.alerts.lag_events) == (6, 10_000)
    assert (config.alerts.dead_letter_percent, config.alerts.silence_minutes) == (5.0, 60)
    with pytest.raises(ConfigError):
        load(write(tmp_path, "dev", text.replace(ALERTS, "")))
