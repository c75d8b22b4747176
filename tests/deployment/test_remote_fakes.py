"""The fakes across a process boundary: a call made in another process is decided by this
process's `Authority`, recorded here when denied, and refused there in the service's shape.

The child side is this module run as `python -m tests.deployment.test_remote_fakes`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.eventhub import EventData
from azure.eventhub.exceptions import ConnectionLostError
from azure.keyvault.secrets.aio import SecretClient

from tests.deployment.instances import INHERITED, ROOT, ServeInstance
from tests.deployment.rehearsal import Azure, create_certificate
from tests.deployment.serve_process import EXIT_ORPHANED
from tests.fakes.authorization import RUNTIME, Estate
from tests.fakes.azurite import Azurite
from tests.fakes.remote import BridgeError, Exposed, FakesServer, RemoteFakes
from tests.stacks.conftest import SynthesizedStack


@pytest.fixture(scope="module")
def estate(prod: SynthesizedStack) -> Estate:
    return Estate.from_stack(prod.document)


def _lent(azure: Azure) -> Exposed:
    transports: dict[str, Any] = {
        "keyvault_options": azure.vault.transport(),
        "graph_transport": azure.graph,
    }
    return Exposed(azure.authority, RUNTIME, transports, azure.eventhubs)


@pytest.mark.slow
def test_a_call_denied_in_a_child_process_is_denied_here_in_the_services_shape(
    estate: Estate, mocker: Any, azurite: Azurite
) -> None:
    azure = Azure.deploy(estate, mocker, azurite)
    runtime = estate.principals[RUNTIME]
    vault, host = azure.outputs["key_vault_uri"], azure.namespace.host
    notifications, findings = azure.outputs["notifications_hub"], azure.outputs["findings_hub"]

    async def scenario() -> dict[str, Any]:
        async with FakesServer(_lent(azure)) as fakes:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.deployment.test_remote_fakes",
                runtime.app_id,
                vault,
                host,
                notifications,
                findings,
                cwd=ROOT,
                env={
                    **{k: os.environ[k] for k in INHERITED if k in os.environ},
                    "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "runtime"))),
                    **fakes.environment(),
                },
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0, err.decode()
        seen: dict[str, Any] = json.loads(out)
        return seen

    seen = asyncio.run(scenario())
    # The child saw what Key Vault and Event Hubs answer a caller without the grant...
    assert seen["keyvault"] == {"status": 403, "code": "Forbidden"}
    assert seen["eventhubs"]["type"] == "ConnectionLostError"
    assert "amqp:unauthorized-access" in seen["eventhubs"]["message"]
    assert "'Send' claim(s) are required" in seen["eventhubs"]["message"]
    # ... and an identity that is not the one lent gets no token at all.
    assert "no managed identity with client id" in seen["identity"]
    # Here, the same Authority recorded both denials, for the runtime identity.
    denied = {(d.principal, d.service) for d in azure.authority.denied}
    assert denied == {(RUNTIME, "Key Vault"), (RUNTIME, "Event Hubs")}
    assert any(d.resource.endswith("/secrets/not-granted") for d in azure.authority.denied)
    # What the grants allow went through: the verdict is on the findings hub, here.
    assert azure.namespace.bodies(findings) == [b"a verdict"]
    assert (RUNTIME, "Event Hubs", f"send to {findings}") in azure.authority.allowed


@pytest.mark.slow
def test_an_instance_whose_fakes_are_gone_exits_rather_than_outlive_the_test(
    estate: Estate, mocker: Any, tmp_path: Path, azurite: Azurite
) -> None:
    azure = Azure.deploy(estate, mocker, azurite)
    settings = {  # less Application Insights, whose exporter would reach Azure Monitor
        k: v
        for k, v in estate.app_settings("azurerm_linux_web_app").items()
        if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"
    }

    async def scenario() -> int | None:
        await create_certificate(azure)
        fakes = FakesServer(_lent(azure))
        await fakes.start()
        instance = ServeInstance.start("web-1", settings, fakes.environment(), tmp_path)
        try:
            deadline = time.monotonic() + 30
            while not azure.vault.secret_reads and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # it waits for its secrets, through the bridge
            assert azure.vault.secret_reads, instance.tail()
            await fakes.close()
            deadline = time.monotonic() + 10
            while not instance.exited and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return instance.process.exitcode
        finally:
            await instance.stop()

    assert asyncio.run(scenario()) == EXIT_ORPHANED


def test_a_connection_without_the_key_is_refused(
    estate: Estate, mocker: Any, azurite: Azurite
) -> None:
    azure = Azure.deploy(estate, mocker, azurite)

    async def scenario() -> None:
        async with FakesServer(_lent(azure)) as fakes:
            stranger = RemoteFakes(fakes.address, "0" * 32)
            with pytest.raises(BridgeError, match="refused this bridge key"):
                await stranger.call("token", client_id=None, scope="https://vault.azure.net")

    asyncio.run(scenario())
    assert azure.authority.allowed == []


async def _child(client_id: str, vault: str, host: str, denied_hub: str, allowed_hub: str) -> None:
    """In the child: one call without a grant to each service, one with, and a stranger's
    token request; what each raised is printed for the test process to read."""
    fakes = RemoteFakes.from_environment()
    fakes.install_eventhubs()
    from graphtap.processing.sinks import eventhubs as sink  # the name the adapters import

    credential = fakes.managed_identity(managed_identity_client_id=client_id)
    seen: dict[str, Any] = {}
    client = SecretClient(vault, credential, transport=fakes.transport("keyvault_options"))
    async with client:
        try:
            await client.get_secret("not-granted")
        except HttpResponseError as error:
            code = error.error.code if error.error is not None else None
            seen["keyvault"] = {"status": error.status_code, "code": code}
    for hub, body in ((denied_hub, b"forged"), (allowed_hub, b"a verdict")):
        producer = sink.EventHubProducerClient(host, hub, credential)  # type: ignore[attr-defined]
        batch = await producer.create_batch()
        batch.add(EventData(body))
        try:
            await producer.send_batch(batch)
        except ConnectionLostError as error:
            seen["eventhubs"] = {"type": type(error).__name__, "message": error.message}
    stranger = fakes.managed_identity(managed_identity_client_id="not-the-runtime")
    try:
        await stranger.get_token("https://vault.azure.net/.default")
    except BridgeError as error:
        seen["identity"] = str(error)
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(_child(*sys.argv[1:]))
