from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graphtap.inspection import InspectionSettings, Inspector, Policy
from graphtap.notifications.keyring import KeyRing
from graphtap.processing import compose
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.sources import SourceEvent
from graphtap.simulation.emitter import DEFAULT_START, NotificationEmitter, collection
from graphtap.simulation.tenant import SyntheticTenant
from graphtap.subscriptions.certificates import (
    CertificateFiles,
    create_certificate,
    load_certificate,
)

CLIENT_STATE = "s3cret-client-state"
HASH_KEY = b"k" * 32


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    create_certificate(directory, certificate_id="cert-a")
    return directory


@pytest.fixture(scope="session")
def cert_a(keys_dir: Path) -> CertificateFiles:
    from graphtap.notifications.keyring import thumbprint

    path = keys_dir / "cert-a.cert.pem"
    return CertificateFiles(
        "cert-a", keys_dir / "cert-a.key.pem", path, thumbprint(load_certificate(path))
    )


@pytest.fixture(scope="session")
def inspector() -> Inspector:
    return Inspector(InspectionSettings(hash_key=HASH_KEY, policy=Policy.default()))


@pytest.fixture(scope="session")
def pipeline_settings(keys_dir: Path) -> PipelineSettings:
    return compose.pipeline_settings(
        key_paths=(keys_dir,), client_states=(CLIENT_STATE,), hash_key=HASH_KEY
    )


@pytest.fixture(scope="session")
def pipeline(keys_dir: Path, inspector: Inspector) -> Pipeline:
    return Pipeline.build(
        keys=KeyRing.load([keys_dir]),
        client_states=[CLIENT_STATE, "previous-state"],
        inspector=inspector,
    )


@dataclass
class Scenario:
    """A synthetic tenant and an emitter for building Graph-exact notification items."""

    tenant: SyntheticTenant
    emitter: NotificationEmitter

    def body(self, *items: dict[str, Any]) -> bytes:
        return collection(list(items))

    def event(self, body: bytes, offset: int = 0) -> SourceEvent:
        return SourceEvent("0", offset, body)


@pytest.fixture
def scenario(cert_a: CertificateFiles) -> Scenario:
    return new_scenario(cert_a, seed=42)


def new_scenario(cert_a: CertificateFiles, *, seed: int) -> Scenario:
    """A synthetic tenant and Graph's emitter for it, encrypting to `cert_a`."""
    rng = random.Random(seed)
    tenant = SyntheticTenant.create(rng, start=DEFAULT_START)
    emitter = NotificationEmitter.for_certificate(
        rng,
        tenant_id=tenant.tenant_id,
        certificate=load_certificate(cert_a.certificate_path),
        certificate_id="cert-a",
        client_state=CLIENT_STATE,
        start=DEFAULT_START,
    )
    return Scenario(tenant, emitter)


def mutate(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(body)
    change(document)
    return json.dumps(document).encode()
