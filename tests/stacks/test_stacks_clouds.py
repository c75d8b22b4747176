"""Each environment runs in one cloud: the profile sets its providers, every host name the stack
builds, its Graph endpoint and the sign-in; nothing of another cloud slips in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from graphtap.clouds import CLOUDS
from stacks.config import ENVIRONMENTS_DIR, ConfigError, load, load_all
from stacks.naming import CLOUD_REGIONS

GOV = (ENVIRONMENTS_DIR / "gov" / "stack.toml").read_text()
DEV = (ENVIRONMENTS_DIR / "dev" / "stack.toml").read_text()
#: Host names only the public cloud has.
PUBLIC_HOSTS = re.compile(
    r"windows\.net|vault\.azure\.net|microsoftonline\.com|azurewebsites\.net"
    r"|graph\.microsoft\.com|management\.azure\.com"
)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name / "stack.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return dict(caught.value.problems)


def test_every_cloud_has_regions() -> None:
    assert set(CLOUD_REGIONS) == set(CLOUDS)


def test_the_cloud_defaults_to_public_and_gov_is_us_government() -> None:
    configs = {config.name: config for config in load_all()}
    assert "cloud" not in DEV
    assert configs["dev"].cloud.name == configs["prod"].cloud.name == "public"
    gov = configs["gov"]
    assert gov.cloud.name == "usgov"
    assert gov.region == "usgovvirginia"
    assert gov.graph.endpoint == "https://graph.microsoft.us"
    assert gov.azuread_environment == "usgovernmentl4"
    assert gov.names.key_vault == "kv-gtap-gov-ugva"


def test_the_graph_endpoint_defaults_to_the_clouds(tmp_path: Path) -> None:
    text = GOV.replace('cloud = "usgov"', 'cloud = "china"').replace(
        'region = "usgovvirginia"', 'region = "chinanorth3"'
    )
    text = re.sub(r'endpoint = "[^"]+"\n', "", text)
    config = load(write(tmp_path, "gov", text))
    assert config.graph.endpoint == "https://microsoftgraph.chinacloudapi.cn"
    assert config.azuread_environment == "china"


def test_the_dod_graph_is_a_us_government_endpoint(tmp_path: Path) -> None:
    text = GOV.replace('"https://graph.microsoft.us"', '"https://dod-graph.microsoft.us"')
    config = load(write(tmp_path, "gov", text))
    assert config.azuread_environment == "usgovernmentl5"


@pytest.mark.parametrize(
    ("old", "new", "key", "rule"),
    [
        ('cloud = "usgov"', 'cloud = "germany"', "cloud", "not a valid cloud profile"),
        (
            'region = "usgovvirginia"',
            'region = "westeurope"',
            "region",
            "not a valid Azure region of the usgov cloud",
        ),
        (
            '"https://graph.microsoft.us"',
            '"https://graph.microsoft.com"',
            "graph.endpoint",
            "not a Graph endpoint of the usgov cloud",
        ),
        (
            '"https://graph.microsoft.us"',
            '"https://graph.microsoft.us/v1.0"',
            "graph.endpoint",
            "an https origin without a path",
        ),
    ],
)
def test_a_cloud_mismatch_is_named(tmp_path: Path, old: str, new: str, key: str, rule: str) -> None:
    assert old in GOV
    problems = problems_of(write(tmp_path, "gov", GOV.replace(old, new)))
    assert rule in problems[key], problems


def test_a_public_region_with_a_national_cloud_graph_is_refused(tmp_path: Path) -> None:
    text = re.sub(r"^cloud = .*\n", "", GOV, flags=re.MULTILINE)
    assert not re.search(r"^cloud", text, flags=re.MULTILINE)
    problems = problems_of(write(tmp_path, "gov", text))
    assert "not a valid Azure region of the public cloud" in problems["region"]
    assert "not a Graph endpoint of the public cloud" in problems["graph.endpoint"]


@pytest.fixture(params=[config.name for config in load_all()], scope="module")
def stack(request: pytest.FixtureRequest, synthesized: Any) -> Any:
    return synthesized.stacks[request.param]


def test_providers_and_state_are_pinned_to_the_cloud(stack: Any) -> None:
    cloud, document = stack.config.cloud, stack.document
    [azurerm] = document["provider"]["azurerm"]
    [azuread] = document["provider"]["azuread"]
    assert azurerm["environment"] == cloud.azurerm_environment
    assert azuread["environment"] == stack.config.azuread_environment
    assert document["terraform"]["backend"]["azurerm"]["environment"] == cloud.azurerm_environment


def test_the_runtime_is_told_its_cloud(stack: Any) -> None:
    assert stack.document["output"]["cloud"]["value"] == stack.config.cloud.name
    for kind in ("azurerm_linux_web_app", "azurerm_function_app_flex_consumption"):
        for site in stack.resources(kind).values():
            assert site["app_settings"]["GRAPHTAP_CLOUD"] == stack.config.cloud.name


def test_a_national_cloud_stack_names_no_public_cloud_host(synthesized: Any) -> None:
    gov = json.dumps(synthesized.stacks["gov"].document)
    assert not PUBLIC_HOSTS.findall(gov)
    for host in (
        "evhns-gtap-gov-ugva.servicebus.usgovcloudapi.net",
        "https://kv-gtap-gov-ugva.vault.usgovcloudapi.net/",
        "https://stgtapgovugva.blob.core.usgovcloudapi.net",
        "app-gtap-gov-ugva.azurewebsites.us",
        "https://login.microsoftonline.us/",
        "https://graph.microsoft.us",
    ):
        assert host in gov
    # the public stacks are the reference: the pattern does find their hosts
    assert PUBLIC_HOSTS.search(json.dumps(synthesized.stacks["dev"].document))


def test_the_functions_host_finds_its_storage_in_a_national_cloud(tmp_path: Path) -> None:
    from stacks.app import build

    text = GOV.replace('processor = "webapp"', 'processor = "both"').replace(
        "graphtap-gov.tfstate", "graphtap-govfn.tfstate"
    )
    config = load(write(tmp_path, "govfn", text))
    outdir = tmp_path / "out"
    build([config], str(outdir)).synth()
    document = json.loads((outdir / "stacks" / "govfn" / "cdk.tf.json").read_text())
    [function] = document["resource"]["azurerm_function_app_flex_consumption"].values()
    settings = function["app_settings"]
    # given only an account name, the Functions host would assume core.windows.net
    assert "AzureWebJobsStorage__accountName" not in settings
    account = config.names.storage_account
    assert settings["AzureWebJobsStorage__blobServiceUri"] == (
        f"https://{account}.blob.core.usgovcloudapi.net"
    )
    assert settings["AzureWebJobsStorage__queueServiceUri"] == (
        f"https://{account}.queue.core.usgovcloudapi.net"
    )
    assert settings["NotificationsHub__fullyQualifiedNamespace"].endswith(
        ".servicebus.usgovcloudapi.net"
    )
    assert function["storage_container_endpoint"].startswith(
        f"https://{account}.blob.core.usgovcloudapi.net/"
    )
    assert not PUBLIC_HOSTS.findall(json.dumps(document))


@pytest.mark.parametrize("environment", [config.name for config in load_all()])
def test_every_stack_environment_has_its_runtime_files(environment: str) -> None:
    from graphtap.inspection import load_policy
    from graphtap.subscriptions.desired import ENVIRONMENTS_DIR as RUNTIME_ENVIRONMENTS
    from graphtap.subscriptions.desired import load_desired

    assert load_desired(environment).subscriptions
    assert load_policy(RUNTIME_ENVIRONMENTS / environment / "policy.toml") is not None
