"""The Azure service reads notified Outlook mail from Graph before each batch: every mail
change on the hub gets its verdict on the findings hub, inspected, or gone when the message
was deleted before it could be read."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from graphtap.hosts.azure import AzureServiceOptions, EventHubsService
from graphtap.hosts.commands.serve import build_app
from graphtap.inspection import Policy
from graphtap.processing.sinks.eventhubs import records
from graphtap.processing.verdicts import GONE, INSPECTED
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.clock import SystemClock
from graphtap.subscriptions.keyvault import DEFAULT_CLIENT_STATE_SECRET
from tests.eventhubs.conftest import FINDINGS, NOTIFICATIONS, drained, wait_for
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.eventhubs import Installed
from tests.fakes.graph import FakeGraph
from tests.fakes.keyvault import FakeKeyVault
from tests.hosts.test_azure_service import CERTIFICATE, deployment

STATE = "state-from-key-vault"


def test_the_service_reads_notified_mail_and_sends_one_verdict_per_change(
    hubs: Installed, tmp_path: Path
) -> None:
    vault = FakeKeyVault()
    version = vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", STATE, None)]
    traffic = list(
        simulate(
            SimulationSettings(count=40, seed=4, mail_share=0.5, sensitive_share=0.5),
            certificate=version.certificate,
            certificate_id=f"{CERTIFICATE}-{version.version}",
            client_state=STATE,
        )
    )
    mail = [content for event in traffic for content in event.mail]
    tenant_id = json.loads(traffic[-1].body)["value"][0]["tenantId"]
    graph = FakeGraph(SystemClock(), tenant_id=tenant_id)
    for content in mail:
        graph.mailboxes.deliver(content.user_id, content.message, attachments=content.attachments)
    deleted = mail[0]
    graph.mailboxes.delete(deleted.user_id, deleted.message["id"])
    hubs.namespace.publish(NOTIFICATIONS, [e.body for e in traffic])

    async def scenario() -> None:
        service = await EventHubsService.open(
            deployment(vault.vault_url),
            TokenCredential(),
            AzureServiceOptions(
                policy=Policy.default(),
                hash_key=b"h" * 32,
                state_dir=tmp_path / "state",
                keyvault_options={"transport": vault.transport()},
                graph_transport=graph,
            ),
        )
        app = build_app(service, None)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"),
        ):
            await wait_for(lambda: drained(hubs), what="all partitions checkpointed")

    asyncio.run(scenario())
    verdicts = [r for b in hubs.namespace.bodies(FINDINGS) for r in records(b)]
    mail_verdicts = [v for v in verdicts if "/messages/" in v["resource"].lower()]
    assert len(mail_verdicts) == len(mail)
    contents = {(v["message_id"], v["content"]) for v in mail_verdicts}
    assert contents == {
        (m.message["id"], GONE if m.message["id"] == deleted.message["id"] else INSPECTED)
        for m in mail
    }
    assert any(v["findings"] for v in mail_verdicts)
    assert sum(graph.mailboxes.reads.values()) >= len(mail) - 1
