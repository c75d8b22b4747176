"""`graphtap bootstrap` and `graphtap doctor`: preflight, secrets, reconcile, the table, exits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import ResourceNotFoundError
from click.testing import CliRunner
from rich.console import Console

from graphtap.hosts.cli import cli
from graphtap.hosts.commands.bootstrap import report
from graphtap.subscriptions.bootstrap import BootstrapResult, bootstrap
from graphtap.subscriptions.preflight import check_deployment
from tests.fakes.azure_transport import FakeAsyncTransport
from tests.fakes.eventhub_mgmt import FakeEventHubManagement, FakeNamespace
from tests.fakes.keyvault import FakeKeyVault
from tests.fakes.storage_mgmt import FakeAccount, FakeStorageManagement
from tests.subscriptions.conftest import Bench, FakeCredential, deployment

NAMESPACE = ("sub", "rg", "graphtap-dev")


def management(**namespace: object) -> FakeEventHubManagement:
    fields: dict[str, object] = {"hubs": {"notifications": 4}, **namespace}
    return FakeEventHubManagement({NAMESPACE: FakeNamespace(**fields)})  # type: ignore[arg-type]


def run_bootstrap(bench: Bench, arm: FakeEventHubManagement) -> BootstrapResult:
    return asyncio.run(
        bootstrap(
            deployment(),
            FakeCredential(),
            keyvault_options={"transport": bench.vault.transport()},
            management_options={"transport": arm.transport()},
        )
    )


def printed(result: BootstrapResult) -> tuple[int, str]:
    console = Console(record=True, width=200)
    status = report(result, console)
    return status, console.export_text()


def test_bootstrap_creates_the_secrets_once_and_never_calls_graph(bench: Bench) -> None:
    del bench.vault.secrets["graph-client-state"]  # a fresh deployment
    first = run_bootstrap(bench, management())
    status, text = printed(first)
    assert status == 0
    assert [(s.name, s.created) for s in first.secrets] == [
        ("graph-client-state", True),
        ("finding-hash-key", True),
    ]
    secret = bench.vault.secrets["graph-client-state"][-1][1]
    assert secret not in text  # never printed
    hash_key = bench.vault.secrets["finding-hash-key"][-1][1]
    assert len(bytes.fromhex(hash_key)) == 32
    assert hash_key not in text
    assert first.certificate_id is not None
    assert first.certificate_id in text
    assert "control plane" in text  # who creates the subscriptions, and as whom
    # Graph keeps a subscription with the app that created it: only the runtime may.
    assert bench.graph.requests == []

    second = run_bootstrap(bench, management())
    assert [s.created for s in second.secrets] == [False, False]
    assert len(bench.vault.secrets["graph-client-state"]) == 1
    assert len(bench.vault.secrets["finding-hash-key"]) == 1


def test_an_unsound_deployment_stops_before_any_secret(bench: Bench) -> None:
    del bench.vault.secrets["graph-client-state"]
    result = run_bootstrap(bench, management(disable_local_auth=False))
    status, text = printed(result)
    assert status == 2
    assert "graph-client-state" not in bench.vault.secrets
    assert "disableLocalAuth" in text
    assert "no secret was written" in text


@pytest.mark.parametrize(
    ("change", "check", "words"),
    [
        ({"tier": "Basic"}, "tier", "256 KB"),
        ({"disable_local_auth": False}, "local auth off", "disableLocalAuth"),
        ({"public_network_access": "Disabled"}, "public network access", "network rules"),
        ({"hubs": {}}, "event hub", "hub notifications not found"),
        ({"hubs": {"notifications": 2}}, "partitions", "2 partitions, the stack configures 4"),
    ],
)
def test_doctor_names_what_is_missing(change: dict[str, object], check: str, words: str) -> None:
    checks = asyncio.run(
        check_deployment(deployment(), FakeCredential(), transport=management(**change).transport())
    )
    failed = [c for c in checks if not c.ok]
    assert [c.name for c in failed] == [check]
    assert words in failed[0].detail


def test_doctor_reports_a_missing_namespace() -> None:
    empty = FakeEventHubManagement()
    checks = asyncio.run(
        check_deployment(deployment(), FakeCredential(), transport=empty.transport())
    )
    assert [(c.name, c.ok) for c in checks] == [("namespace", False)]
    assert "graphtap-dev not found" in checks[0].detail


def test_doctor_needs_the_management_outputs() -> None:
    partial = dataclasses.replace(deployment(), resource_group=None)
    checks = asyncio.run(check_deployment(partial, FakeCredential()))
    assert not checks[0].ok
    assert "resource_group" in checks[0].detail
    assert "make outputs" in checks[0].detail


@pytest.mark.parametrize("command", [["bootstrap"], ["doctor"], ["keys", "rotate"]])
def test_commands_without_stack_outputs_explain_how_to_get_them(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*command, "--env", "staging"])
    assert result.exit_code != 0
    assert "make outputs ENV=staging" in result.output


def test_bootstrap_refuses_an_invalid_declaration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outputs = {k: v for k, v in dataclasses.asdict(deployment()).items() if v is not None}
    (tmp_path / ".outputs").mkdir()
    (tmp_path / ".outputs" / "nowhere.json").write_text(json.dumps(outputs))
    result = CliRunner().invoke(cli, ["bootstrap", "--env", "nowhere"])
    assert result.exit_code != 0
    assert "declare the subscriptions here" in result.output


PAYLOAD_ACCOUNT = ("sub", "rg", "stplgtapdevweu")


@pytest.fixture
def payload_vault() -> FakeKeyVault:
    """The vault of the one secret Graph reads, apart from the stack's (`bench.vault`)."""
    return FakeKeyVault(vault_url="https://kvp-gtap-dev-weu.vault.azure.net")


def run_payload_bootstrap(
    bench: Bench, storage: FakeStorageManagement, payload_vault: FakeKeyVault
) -> BootstrapResult:
    vaults = {urlsplit(v.vault_url).netloc: v for v in (bench.vault, payload_vault)}
    transport = FakeAsyncTransport(
        lambda request: vaults[urlsplit(request.url).netloc].handle(request)
    )
    return asyncio.run(
        bootstrap(
            dataclasses.replace(
                deployment(),
                payload_account="stplgtapdevweu",
                payload_vault_uri=payload_vault.vault_url,
                payload_secret="graph-payload",
            ),
            FakeCredential(),
            keyvault_options={"transport": transport},
            management_options={"transport": management().transport()},
            storage_management_options={"transport": storage.transport()},
        )
    )


def test_bootstrap_gives_graph_the_payload_accounts_connection_string(
    bench: Bench, payload_vault: FakeKeyVault
) -> None:
    """Read from the account's key through Resource Manager, written into the secret Graph's
    `blobStoreUrl` names, kept while the key is unchanged, rewritten after a rotation, and
    never printed."""
    account = FakeAccount()
    storage = FakeStorageManagement({PAYLOAD_ACCOUNT: account})
    first = run_payload_bootstrap(bench, storage, payload_vault)
    status, text = printed(first)
    assert status == 0
    assert (first.secrets[-1].name, first.secrets[-1].created) == ("graph-payload", True)
    value = payload_vault.secrets["graph-payload"][-1][1]
    assert value == (
        "DefaultEndpointsProtocol=https;AccountName=stplgtapdevweu;"
        f"AccountKey={account.keys['key1']};EndpointSuffix=core.windows.net"
    )
    assert account.keys["key1"] not in text
    assert storage.calls == [
        "POST /subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/"
        "stplgtapdevweu/listKeys"
    ]

    second = run_payload_bootstrap(bench, storage, payload_vault)
    assert (second.secrets[-1].created, second.secrets[-1].updated) == (False, False)
    assert len(payload_vault.secrets["graph-payload"]) == 1  # no new version for the same key

    account.renew("key1")
    third = run_payload_bootstrap(bench, storage, payload_vault)
    status, text = printed(third)
    assert third.secrets[-1].updated
    assert "updated" in text
    assert len(payload_vault.secrets["graph-payload"]) == 2
    assert account.keys["key1"] in payload_vault.secrets["graph-payload"][-1][1]


def test_a_payload_account_resource_manager_does_not_know_stops_bootstrap(
    bench: Bench, payload_vault: FakeKeyVault
) -> None:
    with pytest.raises(ResourceNotFoundError, match="stplgtapdevweu"):
        run_payload_bootstrap(bench, FakeStorageManagement(), payload_vault)
    assert "graph-payload" not in payload_vault.secrets
