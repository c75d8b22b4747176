"""`make deploy-app`: what goes into the runtime zip, and the deploy calls, without Azure."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from graphtap.deployment import Deployment, DeploymentError
from scripts.deploy_app import deploy_commands, package

ROOT = Path(__file__).resolve().parents[2]


def write(root: Path, relative: str, text: str = "x") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_zip_holds_the_app_and_nothing_secret_or_cached(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    kept = [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "graphtap/__init__.py",
        "graphtap/py.typed",
        "graphtap/inspection/default_policy.toml",
        "environments/dev/policy.toml",
        "environments/dev/subscriptions.toml",
    ]
    dropped = [
        "environments/dev/stack.toml",  # the stack's settings: the apps get them as settings
        "graphtap/__pycache__/__init__.cpython-311.pyc",
        "graphtap.egg-info/PKG-INFO",
        "graphtap/tests/test_x.py",
        "keys/graphtap-1.key.pem",
        "keys/graphtap-1.cert.pem",
        "keys/bundle.pfx",
        "local.settings.json",
        ".env",
        "verdicts.sqlite",
        "verdicts.jsonl",
        ".mypy_cache/3.11/x.json",
    ]
    for name in kept + dropped:
        write(runtime, name)
    archive = tmp_path / "out" / "app.zip"
    names = package(runtime, archive)
    assert sorted(names) == sorted(kept)
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == sorted(kept)
        assert opened.testzip() is None


def test_a_runtime_without_the_function_entry_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "runtime", "graphtap/__init__.py")
    with pytest.raises(SystemExit, match=r"function_app\.py is missing"):
        package(tmp_path / "runtime", tmp_path / "app.zip")


def test_the_real_runtime_packages(tmp_path: Path) -> None:
    names = package(ROOT / "runtime", tmp_path / "app.zip")
    assert "graphtap/hosts/commands/serve.py" in names
    assert "graphtap/hosts/webapp.py" in names
    assert not [n for n in names if n.endswith(".pyc") or ".egg-info/" in n]


def deployment(**extra: str) -> Deployment:
    outputs = {
        "environment": "dev",
        "tenant_id": "t",
        "tenant_domain": "contoso.com",
        "eventhub_namespace_host": "ns.servicebus.windows.net",
        "notifications_hub": "notifications",
        "findings_hub": "findings",
        "consumer_group": "graphtap",
        "notification_url": "EventHub:https://ns.servicebus.windows.net/eventhubname/n?tenantId=c",
        "key_vault_uri": "https://kv.vault.azure.net/",
        "certificate_name": "graph",
        "runtime_client_id": "id",
        "checkpoint_account_url": "https://sa.blob.core.windows.net",
        "checkpoint_container": "checkpoints",
        **extra,
    }
    return Deployment.from_outputs(outputs, source="test")


def test_deploy_commands_zip_deploy_the_web_and_function_apps(tmp_path: Path) -> None:
    archive = tmp_path / "app.zip"
    web, function = deploy_commands(
        deployment(
            resource_group="rg-graphtap-dev",
            web_app_name="app-graphtap-dev",
            function_app_name="func-graphtap-dev",
            subscription_id="sub",
        ),
        archive,
    )
    assert web[:3] == ["az", "webapp", "deploy"]
    assert web[web.index("--type") + 1] == "zip"
    assert web[web.index("--name") + 1] == "app-graphtap-dev"
    assert web[web.index("--src-path") + 1] == str(archive)
    assert function[:5] == ["az", "functionapp", "deployment", "source", "config-zip"]
    assert function[function.index("--name") + 1] == "func-graphtap-dev"
    assert function[function.index("--build-remote") + 1] == "true"  # installs requirements
    assert web[-2:] == function[-2:] == ["--subscription", "sub"]


def test_deploy_needs_the_web_app_name() -> None:
    with pytest.raises(DeploymentError, match="web_app_name"):
        deploy_commands(deployment(resource_group="rg"), Path("app.zip"))
