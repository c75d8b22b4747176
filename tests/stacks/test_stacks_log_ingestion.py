"""Verdicts in Log Analytics: the table and the rule's stream are the runtime's columns, the
runtime may publish through that rule only, the dedupe function is deployed, and each
environment's `[findings] destinations` decides whether any of it exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from graphtap.deployment import Deployment
from graphtap.processing.sinks.loganalytics import VERDICT_COLUMNS, VERDICT_STREAM, VERDICT_TABLE
from stacks.aspects import violations
from stacks.config import ENVIRONMENTS_DIR, ConfigError, load
from tests.fakes.authorization import Estate
from tests.stacks.conftest import SynthesizedApp, SynthesizedStack

KQL = Path(__file__).resolve().parents[2] / "stacks" / "kql" / "verdicts.kql"
COLUMNS = [(c.name, c.type) for c in VERDICT_COLUMNS]
LOGS_SETTINGS = ("GRAPHTAP_LOGS_INGESTION_ENDPOINT", "GRAPHTAP_LOGS_DCR_ID", "GRAPHTAP_LOGS_STREAM")


def one(stack: SynthesizedStack, kind: str) -> dict[str, Any]:
    (body,) = stack.resources(kind).values()
    return body


def address(stack: SynthesizedStack, kind: str) -> str:
    (name,) = stack.resources(kind)
    return f"{kind}.{name}"


def test_the_table_and_the_stream_are_the_runtimes_columns(prod: SynthesizedStack) -> None:
    table = one(prod, "azurerm_log_analytics_workspace_table_custom_log")
    assert table["name"] == VERDICT_TABLE
    assert [(c["name"], c["type"]) for c in table["column"]] == COLUMNS
    rule = one(prod, "azurerm_monitor_data_collection_rule")
    (stream,) = rule["stream_declaration"]
    assert stream["stream_name"] == VERDICT_STREAM
    assert [(c["name"], c["type"]) for c in stream["column"]] == COLUMNS
    (flow,) = rule["data_flow"]
    assert flow == {
        "streams": [VERDICT_STREAM],
        "destinations": ["workspace"],
        "transform_kql": "source",
        "output_stream": f"Custom-{VERDICT_TABLE}",
    }
    workspace = address(prod, "azurerm_log_analytics_workspace")
    assert rule["destinations"]["log_analytics"] == [
        {"name": "workspace", "workspace_resource_id": f"${{{workspace}.id}}"}
    ]
    assert table["workspace_id"] == f"${{{workspace}.id}}"
    endpoint = address(prod, "azurerm_monitor_data_collection_endpoint")
    assert rule["data_collection_endpoint_id"] == f"${{{endpoint}.id}}"
    assert rule["depends_on"] == [address(prod, "azurerm_log_analytics_workspace_table_custom_log")]


#: Names Log Analytics keeps for itself in every table; a custom table declaring one is refused.
RESERVED_COLUMNS = {"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"}


@pytest.mark.parametrize("column", VERDICT_COLUMNS, ids=lambda c: c.name)
def test_every_column_name_is_one_log_analytics_accepts(column: Any) -> None:
    assert column.name.casefold() not in {name.casefold() for name in RESERVED_COLUMNS}
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,44}", column.name)


def test_the_runtime_publishes_through_the_rule_and_nowhere_else(prod: SynthesizedStack) -> None:
    rule = address(prod, "azurerm_monitor_data_collection_rule")
    publishers = [
        body
        for body in prod.resources("azurerm_role_assignment").values()
        if body["role_definition_name"] == "Monitoring Metrics Publisher"
    ]
    identity = address(prod, "azurerm_user_assigned_identity")
    assert publishers == [
        {
            **publishers[0],
            "scope": f"${{{rule}.id}}",
            "principal_id": f"${{{identity}.principal_id}}",
            "principal_type": "ServicePrincipal",
        }
    ]
    # Resolved as Azure would: the rule's own ARM id, not its group or the workspace.
    estate = Estate.from_stack(prod.document)
    (grant,) = [g for g in estate.grants if g.role == "Monitoring Metrics Publisher"]
    assert grant.scope == estate.resource_id(*rule.split("."))
    assert grant.scope.rsplit("/", 2)[-2] == "dataCollectionRules"


def test_the_dedupe_function_is_the_kql_file(prod: SynthesizedStack) -> None:
    function = one(prod, "azurerm_log_analytics_saved_search")
    assert function["function_alias"] == "GraphtapVerdicts"
    assert function["query"] == KQL.read_text(encoding="utf-8")
    query_lines = [line for line in function["query"].splitlines() if not line.startswith("//")]
    assert query_lines == [VERDICT_TABLE, "| summarize arg_max(TimeGenerated, *) by VerdictKey"]


def test_the_hosts_are_told_where_to_send_rows(prod: SynthesizedStack) -> None:
    estate = Estate.from_stack(prod.document)
    for kind in ("azurerm_linux_web_app", "azurerm_function_app_flex_consumption"):
        settings = estate.app_settings(kind)
        assert settings["GRAPHTAP_FINDINGS_DESTINATIONS"] == "findings_hub,log_analytics"
        assert settings["GRAPHTAP_LOGS_STREAM"] == VERDICT_STREAM
        assert settings["GRAPHTAP_LOGS_INGESTION_ENDPOINT"].startswith("https://dce-gtap-prod-")
        assert settings["GRAPHTAP_LOGS_DCR_ID"].startswith("dcr-")
        deployment = Deployment.from_app_settings(settings)
        assert deployment.destinations == ("findings_hub", "log_analytics")
    unresolved = estate.document["resource"]["azurerm_linux_web_app"]
    (web,) = unresolved.values()
    rule = address(prod, "azurerm_monitor_data_collection_rule")
    assert web["app_settings"]["GRAPHTAP_LOGS_DCR_ID"] == f"${{{rule}.immutable_id}}"


def test_an_environment_without_log_analytics_has_none_of_it(dev: SynthesizedStack) -> None:
    for kind in (
        "azurerm_log_analytics_workspace_table_custom_log",
        "azurerm_monitor_data_collection_rule",
        "azurerm_monitor_data_collection_endpoint",
        "azurerm_log_analytics_saved_search",
    ):
        assert dev.resources(kind) == {}
    roles = {b["role_definition_name"] for b in dev.resources("azurerm_role_assignment").values()}
    assert "Monitoring Metrics Publisher" not in roles
    settings = Estate.from_stack(dev.document).app_settings("azurerm_linux_web_app")
    assert settings["GRAPHTAP_FINDINGS_DESTINATIONS"] == "findings_hub"
    assert not set(LOGS_SETTINGS) & set(settings)
    assert Deployment.from_app_settings(settings).destinations == ("findings_hub",)


def test_gov_sends_to_log_analytics_only(synthesized: SynthesizedApp) -> None:
    gov = synthesized.stacks["gov"]
    assert gov.config.findings.destinations == ("log_analytics",)
    settings = Estate.from_stack(gov.document).app_settings("azurerm_linux_web_app")
    assert settings["GRAPHTAP_FINDINGS_DESTINATIONS"] == "log_analytics"
    assert set(LOGS_SETTINGS) <= set(settings)
    assert len(gov.resources("azurerm_monitor_data_collection_rule")) == 1


def test_a_grant_on_the_rule_is_narrow_and_one_on_the_endpoint_is_not() -> None:
    def role(scope: str) -> dict[str, Any]:
        return {"scope": scope, "role_definition_name": "Monitoring Metrics Publisher"}

    assert (
        violations("azurerm_role_assignment", role("${azurerm_monitor_data_collection_rule.r.id}"))
        == []
    )
    assert violations(
        "azurerm_role_assignment", role("${azurerm_monitor_data_collection_endpoint.e.id}")
    )


def test_deployment_facts_must_agree_with_the_destinations(prod: SynthesizedStack) -> None:
    settings = Estate.from_stack(prod.document).app_settings("azurerm_linux_web_app")
    with pytest.raises(ValueError, match="names log_analytics but logs_dcr_id is missing"):
        Deployment.from_app_settings({**settings, "GRAPHTAP_LOGS_DCR_ID": ""})
    with pytest.raises(ValueError, match="'findings_hub,splunk' must name one or more of"):
        Deployment.from_app_settings(
            {**settings, "GRAPHTAP_FINDINGS_DESTINATIONS": "findings_hub,splunk"}
        )
    # A deployment from before the choice sends to the hub, as it always did.
    older = {k: v for k, v in settings.items() if k != "GRAPHTAP_FINDINGS_DESTINATIONS"}
    assert Deployment.from_app_settings(older).destinations == ("findings_hub",)


DEV = (ENVIRONMENTS_DIR / "dev" / "stack.toml").read_text()


@pytest.mark.parametrize(
    ("destinations", "rule"),
    [
        ("[]", "must name at least one destination"),
        ('["findings_hub", "splunk"]', "'splunk' is not a verdict destination"),
        ('["log_analytics", "log_analytics"]', "lists a destination twice"),
        ('"log_analytics"', "must be a list of strings"),
    ],
)
def test_destinations_are_validated_naming_file_key_and_rule(
    tmp_path: Path, destinations: str, rule: str
) -> None:
    text = DEV.replace('destinations = ["findings_hub"]', f"destinations = {destinations}")
    assert text != DEV
    path = tmp_path / "dev" / "stack.toml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert f"{path}: findings.destinations: " in str(caught.value)
    assert any(
        key == "findings.destinations" and rule in problem for key, problem in caught.value.problems
    )


def test_shipped_destinations() -> None:
    chosen = {
        name: load(ENVIRONMENTS_DIR / name / "stack.toml").findings.destinations
        for name in ("dev", "gov", "prod")
    }
    assert chosen == {
        "dev": ("findings_hub",),
        "gov": ("log_analytics",),
        "prod": ("findings_hub", "log_analytics"),
    }
