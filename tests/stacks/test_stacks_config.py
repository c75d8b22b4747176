"""Environment files: the shipped ones load, and every rule stops a bad file with a message
naming the file, the key and the rule."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import ENVIRONMENTS_DIR, AccessConfig, ConfigError, load, load_all

ROOT = Path(__file__).resolve().parents[2]
DEV = (ENVIRONMENTS_DIR / "dev" / "stack.toml").read_text()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name / "stack.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    return caught.value.problems


def test_shipped_environments_load() -> None:
    configs = {config.name: config for config in load_all()}
    assert set(configs) >= {"dev", "prod"}
    assert configs["dev"].hosting.function_app is False
    assert configs["prod"].hosting.function_app is True
    assert configs["prod"].eventhubs.partitions == 16
    assert configs["dev"].graph.permissions == ("Chat.Read.All", "ChannelMessage.Read.All")


def test_adding_an_environment_is_adding_one_file(tmp_path: Path) -> None:
    write(tmp_path, "dev", DEV)
    write(tmp_path, "staging", DEV.replace("graphtap-dev.tfstate", "graphtap-staging.tfstate"))
    configs = load_all(tmp_path)
    assert [config.name for config in configs] == ["dev", "staging"]
    assert configs[1].names.key_vault == "kv-gtap-staging-weu"


@pytest.mark.parametrize(
    ("old", "new", "key", "rule"),
    [
        (
            'region = "westeurope"',
            'region = "westeurope"\ncolour = "blue"',
            "colour",
            "unknown key",
        ),
        ("partitions = 2", "partitions = 2\nsize = 1", "eventhubs.size", "unknown key"),
        ('region = "westeurope"', 'region = "europewest"', "region", "not a valid Azure region"),
        ('sku = "Standard"', 'sku = "Basic"', "eventhubs.sku", "not a valid SKU"),
        ('app_service_sku = "B1"', 'app_service_sku = "F1"', "hosting.app_service_sku", "SKU"),
        ("partitions = 2", 'partitions = "two"', "eventhubs.partitions", "must be int"),
        ("partitions = 2", "partitions = 64", "eventhubs.partitions", "1-32"),
        ("retention_hours = 24", "retention_hours = 240", "eventhubs.retention_hours", "1-168"),
        ('processor = "webapp"', 'processor = "vm"', "hosting.processor", "not a valid value"),
        (
            '"Chat.Read.All", ',
            '"Chat.ReadWrite.All", ',
            "graph.permissions",
            "grant the .Read variant",
        ),
        (
            "use_azuread_auth = true",
            "use_azuread_auth = false",
            "backend.use_azuread_auth",
            "no keys",
        ),
        ('"graphtap-dev.tfstate"', '"graphtap-prod.tfstate"', "backend.key", "environment name"),
        (
            'tenant_domain = "contoso.onmicrosoft.com"',
            'tenant_domain = "contoso"',
            "tenant_domain",
            "DNS",
        ),
        (
            "operator_ip_ranges = []",
            'operator_ip_ranges = ["10.0.0.0/8"]',
            "network.operator_ip_ranges",
            "public",
        ),
        (
            'status_readers_group = "00000000-0000-0000-0000-00000000d001"',
            'status_readers_group = "Status Readers"',
            "access.status_readers_group",
            "must be a lowercase GUID",
        ),
        (
            "# metrics_scraper = ",
            "metrics_scraper = 7 #",
            "access.metrics_scraper",
            "must be str",
        ),
        ("[access]", "[access]\nreaders = []", "access.readers", "unknown key"),
    ],
)
def test_a_broken_rule_names_the_key_and_the_rule(
    tmp_path: Path, old: str, new: str, key: str, rule: str
) -> None:
    assert old in DEV
    problems = problems_of(write(tmp_path, "dev", DEV.replace(old, new, 1)))
    assert any(k == key and rule in r for k, r in problems), problems


def test_access_names_principals_by_object_id_and_each_key_is_optional(tmp_path: Path) -> None:
    configs = {config.name: config for config in load_all()}
    assert configs["dev"].access == AccessConfig(
        status_readers_group="00000000-0000-0000-0000-00000000d001", metrics_scraper=None
    )
    assert configs["prod"].access.metrics_scraper == "00000000-0000-0000-0000-00000000e002"
    without = re.sub(r"\[access\][^[]*", "", DEV)
    assert "status_readers_group" not in without
    assert load(write(tmp_path, "dev", without)).access == AccessConfig(None, None)


def test_a_name_too_long_for_its_resource_names_the_resource_and_limit(tmp_path: Path) -> None:
    text = DEV.replace('prefix = "gtap"', 'prefix = "contosodlp"').replace(
        "graphtap-dev.tfstate", "graphtap-staging.tfstate"
    )
    problems = problems_of(write(tmp_path, "staging", text))
    assert (
        "prefix",
        "the Key Vault name 'kv-contosodlp-staging-weu' is 25 characters; "
        "Key Vault names are 3-24 characters",
    ) in problems


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = DEV.replace('region = "westeurope"', 'region = "mars"').replace(
        'sku = "Standard"', 'sku = "Basic"'
    )
    keys = {key for key, _ in problems_of(write(tmp_path, "dev", text))}
    assert {"region", "eventhubs.sku"} <= keys


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "dev", "prefix = "))
    assert problems[0][0] == "(file)"


def test_synth_stops_with_the_message_before_building_anything(tmp_path: Path) -> None:
    path = write(tmp_path, "dev", DEV.replace('sku = "Standard"', 'sku = "Basic"'))
    outdir = tmp_path / "cdktf.out"
    env = {
        **os.environ,
        "GRAPHTAP_STACKS_ENVIRONMENTS": str(tmp_path),
        "CDKTF_OUTDIR": str(outdir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "stacks"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{path}: eventhubs.sku: 'Basic' is not a valid SKU" in result.stderr
    assert not outdir.exists()


CDK_IMPORT = re.compile(r"^\s*(from|import)\s+(cdktf|cdktn|constructs|jsii)\b", re.M)


def test_every_cdk_import_is_in_one_module() -> None:
    stacks_dir = ROOT / "stacks"
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*stacks_dir.rglob("*.py"), *(ROOT / "tests" / "stacks").rglob("*.py")]
        if path.name != "cdk.py" and CDK_IMPORT.search(path.read_text())
    ]
    provider_imports = [
        str(path.relative_to(ROOT))
        for path in stacks_dir.rglob("*.py")
        if path.name != "cdk.py" and "cdktf_cdktf_provider_" in path.read_text()
    ]
    assert offenders == []
    assert provider_imports == []


def test_large_payloads_is_off_unless_the_file_turns_it_on(tmp_path: Path) -> None:
    without = "\n".join(line for line in DEV.splitlines() if "large_payloads" not in line)
    assert load(write(tmp_path, "dev", without)).graph.large_payloads is False
    assert load(write(tmp_path / "on", "dev", DEV)).graph.large_payloads is True
    problems = problems_of(
        write(
            tmp_path / "bad", "dev", DEV.replace("large_payloads = true", 'large_payloads = "yes"')
        )
    )
    assert ("graph.large_payloads", "must be bool, got str 'yes'") in problems
