"""The stacks and the runtime agree: what the apps are given is what the runtime reads."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from graphtap.deployment import Deployment
from stacks.config import load_all

ENVIRONMENTS = [config.name for config in load_all()]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_web_app_settings_describe_a_whole_deployment(synthesized: Any, environment: str) -> None:
    stack = synthesized.stacks[environment]
    [web_app] = stack.resources("azurerm_linux_web_app").values()
    deployment = Deployment.from_app_settings(web_app["app_settings"])
    assert deployment.environment == environment
    assert deployment.notification_url.startswith("EventHub:https://")
    assert "/eventhubname/" in deployment.notification_url
    assert deployment.runtime_client_id  # the user-assigned identity DefaultAzureCredential uses
    # dead letters outlive the instance: the blob container, not the local file
    assert deployment.dead_letter_container == "dead-letters"
    # every host the runtime is given is in the cloud it is told it runs in
    cloud = deployment.profile
    assert cloud == stack.config.cloud
    assert deployment.eventhub_namespace_host.endswith(f".{cloud.eventhubs_suffix}")
    assert deployment.key_vault_uri.startswith("https://")
    assert deployment.key_vault_uri.endswith(f".{cloud.key_vault_suffix}/")
    assert deployment.checkpoint_account_url.endswith(f".blob.{cloud.storage_suffix}")
    assert deployment.graph_endpoint in cloud.graph_endpoints


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_outputs_name_every_field_bootstrap_reads(synthesized: Any, environment: str) -> None:
    outputs = set(synthesized.stacks[environment].document["output"])
    assert {f.name for f in dataclasses.fields(Deployment)} <= outputs
