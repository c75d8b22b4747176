"""The Azure service: key and clientState from Key Vault, Event Hubs in, findings hub out."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphtap.deployment import Deployment
from graphtap.hosts.azure import (
    AzureProcessing,
    AzureServiceOptions,
    EventHubsService,
)
from graphtap.hosts.commands.serve import build_app
from graphtap.inspection import Policy
from graphtap.processing.committer import BlockingDeadLetters
from graphtap.processing.sinks.blob import BlobDeadLetters
from graphtap.processing.sinks.eventhubs import records
from graphtap.processing.sinks.jsonl import JsonlDeadLetters
from graphtap.simulation.emitter import SimulatedEvent, SimulationSettings, simulate
from graphtap.subscriptions.keyvault import (
    DEFAULT_CLIENT_STATE_SECRET,
    DEFAULT_FINDING_HASH_KEY_SECRET,
    KeyVault,
)
from graphtap.subscriptions.resync import ProcessingSubmitter, ResyncEvent
from tests.eventhubs.conftest import (
    ACCOUNT,
    CONSUMER_GROUP,
    CONTAINER,
    FINDINGS,
    NAMESPACE,
    NOTIFICATIONS,
    drained,
    wait_for,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage
from tests.fakes.eventhubs import Installed
from tests.fakes.keyvault import CertificateVersion, FakeKeyVault

CERTIFICATE = "graph-encryption"


def deployment(vault_url: str, **settings: str) -> Deployment:
    return Deployment.from_app_settings(
        {
            **settings,
            "GRAPHTAP_ENV": "dev",
            "GRAPHTAP_TENANT_ID": "tenant",
            "GRAPHTAP_TENANT_DOMAIN": "contoso.com",
            "GRAPHTAP_EVENTHUB_NAMESPACE": NAMESPACE,
            "GRAPHTAP_NOTIFICATIONS_HUB": NOTIFICATIONS,
            "GRAPHTAP_FINDINGS_HUB": FINDINGS,
            "GRAPHTAP_CONSUMER_GROUP": CONSUMER_GROUP,
            "GRAPHTAP_KEY_VAULT_URI": vault_url,
            "GRAPHTAP_CERTIFICATE_NAME": CERTIFICATE,
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
            "GRAPHTAP_CHECKPOINT_ACCOUNT_URL": ACCOUNT,
            "GRAPHTAP_CHECKPOINT_CONTAINER": CONTAINER,
        }
    )


def test_service_decrypts_with_key_vault_keys_across_a_rotation(
    hubs: Installed, tmp_path: Path
) -> None:
    vault = FakeKeyVault()
    version = vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state-from-key-vault", None)]
    traffic = list(
        simulate(
            SimulationSettings(count=60, seed=9),
            certificate=version.certificate,
            certificate_id=f"{CERTIFICATE}-{version.version}",
            client_state="state-from-key-vault",
        )
    )
    hubs.namespace.publish(NOTIFICATIONS, [e.body for e in traffic])
    first_id = f"{CERTIFICATE}-{version.version}"

    def rotated_traffic(rotated: CertificateVersion) -> list[SimulatedEvent]:
        return list(
            simulate(
                SimulationSettings(count=20, seed=10),
                certificate=rotated.certificate,
                certificate_id=f"{CERTIFICATE}-{rotated.version}",
                client_state="state-from-key-vault",
            )
        )

    async def scenario() -> tuple[dict[str, Any], Path]:
        service = await EventHubsService.open(
            deployment(vault.vault_url),
            TokenCredential(),
            AzureServiceOptions(
                policy=Policy.default(),
                hash_key=b"h" * 32,
                state_dir=tmp_path / "state",
                keyvault_options={"transport": vault.transport()},
            ),
        )
        key_directory = service.processing.key_directory
        assert [p.name for p in key_directory.iterdir()] == [f"{first_id}.key.pem"]
        assert key_directory.stat().st_mode & 0o077 == 0
        rotated = vault.add_certificate_version(CERTIFICATE)  # the control plane rotates...
        keyvault = KeyVault(vault.vault_url, TokenCredential(), transport=vault.transport())
        await service.processing.add_certificate(await keyvault.certificate(CERTIFICATE))
        await keyvault.close()
        hubs.namespace.publish(NOTIFICATIONS, [e.body for e in rotated_traffic(rotated)])
        app = build_app(service, None)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await wait_for(lambda: drained(hubs, service.source), what="all partitions handled")
            status = (await client.get("/status.json")).json()
            assert (await client.get("/readyz")).status_code == 200
        return status, key_directory

    status, key_directory = asyncio.run(scenario())
    assert status["mode"] == "Azure Event Hubs"
    published = len(hubs.namespace.bodies(NOTIFICATIONS))
    assert status["summary"]["events"] == published > len(traffic)
    assert status["summary"]["dead_letters_by_reason"] == {}  # both keys decrypt
    verdicts = [r for b in hubs.namespace.bodies(FINDINGS) for r in records(b)]
    assert len(verdicts) == status["summary"]["verdicts"]
    used = {v["certificate_id"] for v in verdicts if v["content"] == "inspected"}
    assert len(used) == 2
    assert first_id in used
    assert not key_directory.exists()  # the key is gone once the service stops
    assert (tmp_path / "state" / "lifecycle.sqlite").exists()


def test_state_lives_per_instance_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphtap.hosts.azure import default_state_dir

    monkeypatch.delenv("GRAPHTAP_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", "/home")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc123")
    assert default_state_dir() == Path("/home/data/graphtap/abc123")
    monkeypatch.setenv("GRAPHTAP_STATE_DIR", "/mnt/state")
    assert default_state_dir() == Path("/mnt/state")


def test_without_a_given_key_the_environments_hash_key_comes_from_key_vault(
    hubs: Installed, tmp_path: Path
) -> None:
    vault = FakeKeyVault()
    vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]

    async def open_with(options: AzureServiceOptions) -> bytes:
        processing = await AzureProcessing.open(
            deployment(vault.vault_url), TokenCredential(), options
        )
        try:
            return processing.pipeline.inspection.hash_key
        finally:
            await processing.close()

    options = AzureServiceOptions(
        policy=Policy.default(),
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
    )
    with pytest.raises(TimeoutError):  # the runtime reads the key; only bootstrap creates it
        asyncio.run(asyncio.wait_for(open_with(options), 0.5))
    assert DEFAULT_FINDING_HASH_KEY_SECRET not in vault.secrets
    vault.secrets[DEFAULT_FINDING_HASH_KEY_SECRET] = [("v1", "ab" * 32, None)]
    assert asyncio.run(open_with(options)) == bytes.fromhex("ab" * 32)


def test_gap_resync_goes_through_the_live_path_once(hubs: Installed, tmp_path: Path) -> None:
    vault = FakeKeyVault()
    version = vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]
    traffic = list(
        simulate(
            SimulationSettings(count=40, seed=4, fault_share=0.15),
            certificate=version.certificate,
            certificate_id=f"{CERTIFICATE}-{version.version}",
            client_state="state",
        )
    )
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
    )

    async def scenario() -> tuple[int, int]:
        processing = await AzureProcessing.open(
            deployment(vault.vault_url), TokenCredential(), options
        )
        try:
            resync = ProcessingSubmitter(processing.executor.process, processing.committer)
            bodies = [ResyncEvent(e.body) for e in traffic]
            return await resync.submit(bodies), await resync.submit(bodies)
        finally:
            await processing.close()

    first, again = asyncio.run(scenario())
    changes = sum(e.changes for e in traffic)
    faults = sum(len(e.faults) for e in traffic)
    assert faults > 0
    assert first == changes
    assert again == 0
    published = [r["verdict_key"] for b in hubs.namespace.bodies(FINDINGS) for r in records(b)]
    assert len(published) == len(set(published)) == changes  # each verdict reached it once
    lines = [
        json.loads(line)
        for line in (tmp_path / "state" / "dead-letters.jsonl").read_text().splitlines()
    ]
    letters = [r for r in lines if "dead_letter_key" in r]
    assert sum(letter["item_count"] for letter in letters) == faults
    assert len(lines) == 2 * len(letters)  # each faulty event's body, once


def test_dead_letters_go_to_the_deployments_blob_container(
    hubs: Installed,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    azurite_storage: AzuriteStorage,
) -> None:
    vault = FakeKeyVault()
    version = vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]
    blobs = azurite_storage  # the deployment's one account: checkpoints and dead letters
    assert blobs.account_url == ACCOUNT
    blobs.create_container("dead-letters")
    traffic = list(
        simulate(
            SimulationSettings(count=40, seed=4, fault_share=0.15),
            certificate=version.certificate,
            certificate_id=f"{CERTIFICATE}-{version.version}",
            client_state="state",
        )
    )
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
        blob_options={"transport": blobs.transport()},
    )
    configured = deployment(vault.vault_url, GRAPHTAP_DEAD_LETTER_CONTAINER="dead-letters")
    assert configured.dead_letter_container == "dead-letters"

    async def scenario() -> None:
        processing = await AzureProcessing.open(configured, TokenCredential(), options)
        try:
            assert isinstance(processing.dead_letters, BlobDeadLetters)
            await ProcessingSubmitter(processing.executor.process, processing.committer).submit(
                [ResyncEvent(e.body) for e in traffic]
            )
        finally:
            await processing.close()

    with caplog.at_level(logging.WARNING, logger="graphtap.hosts.azure"):
        asyncio.run(scenario())
    faults = sum(len(e.faults) for e in traffic)
    assert faults > 0
    stored = blobs.blobs("dead-letters")
    assert len([name for name in stored if not name.startswith("events/")]) == faults
    assert len([name for name in stored if name.startswith("events/")]) == faults  # the bodies
    assert not (tmp_path / "state" / "dead-letters.jsonl").exists()
    assert "instance's disk only" not in caplog.text


def test_without_a_dead_letter_container_they_stay_on_the_instance_and_it_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vault = FakeKeyVault()
    vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
    )

    async def scenario() -> object:
        processing = await AzureProcessing.open(
            deployment(vault.vault_url), TokenCredential(), options
        )
        await processing.close()
        return processing.dead_letters

    with caplog.at_level(logging.WARNING, logger="graphtap.hosts.azure"):
        store = asyncio.run(scenario())
    assert isinstance(store, BlockingDeadLetters)
    assert isinstance(store.store, JsonlDeadLetters)
    assert "GRAPHTAP_DEAD_LETTER_CONTAINER" in caplog.text
    assert "instance's disk only" in caplog.text


def test_a_host_started_before_bootstrap_waits_for_its_secrets_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Instances starting together must not each create a different secret: they wait."""
    vault = FakeKeyVault()
    vault.add_certificate_version(CERTIFICATE)
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
        secret_poll_seconds=0.01,
    )

    async def scenario() -> AzureProcessing:
        opening = asyncio.create_task(
            AzureProcessing.open(deployment(vault.vault_url), TokenCredential(), options)
        )
        while vault.secret_reads.count(DEFAULT_CLIENT_STATE_SECRET) < 5:
            await asyncio.sleep(0.01)
        assert not opening.done()
        assert DEFAULT_CLIENT_STATE_SECRET not in vault.secrets  # never minted by a host
        vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "from-bootstrap", None)]  # bootstrap
        processing = await asyncio.wait_for(opening, 5)
        await processing.close()
        return processing

    with caplog.at_level(logging.WARNING, logger="graphtap.hosts.azure"):
        processing = asyncio.run(scenario())
    assert processing.pipeline.client_states == ("from-bootstrap",)
    waiting = [r for r in caplog.records if "waiting for it" in r.getMessage()]
    assert len(waiting) == 1
    assert "graph-client-state" in waiting[0].getMessage()
    assert "make bootstrap" in waiting[0].getMessage()


def test_restarts_keep_recent_keys_and_new_versions_are_picked_up(tmp_path: Path) -> None:
    """Graph keeps encrypting to the previous certificate for a while after AutoRenew."""
    vault = FakeKeyVault()
    versions = [vault.add_certificate_version(CERTIFICATE) for _ in range(4)]
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
        key_versions=3,
        certificate_check_seconds=0.0,
    )

    def key_files(processing: AzureProcessing) -> set[str]:
        return {p.name for p in processing.key_directory.iterdir()}

    async def scenario() -> tuple[set[str], set[str]]:
        processing = await AzureProcessing.open(
            deployment(vault.vault_url), TokenCredential(), options
        )
        try:
            at_start = key_files(processing)
            versions.append(vault.add_certificate_version(CERTIFICATE))  # AutoRenew
            await processing.check_certificate()
            return at_start, key_files(processing)
        finally:
            await processing.close()

    at_start, later = asyncio.run(scenario())
    expected = {f"{CERTIFICATE}-{v.version}.key.pem" for v in versions[1:4]}
    assert at_start == expected  # the newest three, not the retired first one
    assert later == expected | {f"{CERTIFICATE}-{versions[4].version}.key.pem"}


def test_new_versions_are_looked_for_on_the_monotonic_clock(tmp_path: Path) -> None:
    """The interval between looks is read from the injected monotonic clock alone."""
    vault = FakeKeyVault()
    vault.add_certificate_version(CERTIFICATE)
    vault.secrets[DEFAULT_CLIENT_STATE_SECRET] = [("v1", "state", None)]
    elapsed = [1_000.0]
    options = AzureServiceOptions(
        policy=Policy.default(),
        hash_key=b"h" * 32,
        state_dir=tmp_path / "state",
        keyvault_options={"transport": vault.transport()},
        certificate_check_seconds=300.0,
        clock=lambda: elapsed[0],
    )

    async def scenario() -> tuple[int, int, int]:
        processing = await AzureProcessing.open(
            deployment(vault.vault_url), TokenCredential(), options
        )
        try:
            vault.add_certificate_version(CERTIFICATE)  # AutoRenew
            elapsed[0] += 299.0
            await processing.check_certificate()
            early = len(list(processing.key_directory.iterdir()))
            elapsed[0] += 1.0
            await processing.check_certificate()
            due = len(list(processing.key_directory.iterdir()))
            vault.add_certificate_version(CERTIFICATE)
            elapsed[0] += 299.0
            await processing.check_certificate()
            return early, due, len(list(processing.key_directory.iterdir()))
        finally:
            await processing.close()

    assert asyncio.run(scenario()) == (1, 2, 2)
