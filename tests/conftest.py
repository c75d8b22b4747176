"""Fixtures shared by every test package."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from graphtap.inspection import compiled
from graphtap.notifications.model import EncryptedContent
from tests.fakes.azurite import Azurite, AzuriteStorage, running

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def compiled_detectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of compiled detectors for the run (and the commands it starts), not the
    user's: the suite builds hundreds of inspectors and compiles the policy once."""
    folder = tmp_path_factory.mktemp("compiled-detectors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(compiled.CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the project root: platform test vectors that are not copied in."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the test suite reads Graph's own vectors from it")
    return SHARED


@dataclass(frozen=True)
class GraphVector:
    """Graph's own encrypted payload, with the key it was encrypted for."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    pkcs12: bytes
    password: bytes
    content: dict[str, str]
    expected: dict[str, str]

    def encrypted_content(self) -> EncryptedContent:
        c = self.content
        return EncryptedContent(
            c["data"],
            c["dataKey"],
            c["dataSignature"],
            c["encryptionCertificateId"],
            c["encryptionCertificateThumbprint"],
        )


@pytest.fixture(scope="session")
def graph_vector(shared_dir: Path) -> GraphVector:
    raw: dict[str, Any] = json.loads(
        (shared_dir / "testdata" / "graph-sdk-vector.json").read_text()
    )
    bundle = base64.b64decode(raw["pkcs12_base64"])
    password = raw["pkcs12_password"].encode()
    key, certificate, _ = pkcs12.load_key_and_certificates(bundle, password)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert certificate is not None
    return GraphVector(key, certificate, bundle, password, raw["encryptedContent"], raw["expected"])


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the session, on loopback with free ports, stopped at the end."""
    with running(tmp_path_factory.mktemp("azurite")) as emulator:
        yield emulator


@pytest.fixture
def azurite_storage(azurite: Azurite) -> AzuriteStorage:
    """An empty storage account for one test, served by Azurite (no authorization set)."""
    storage = AzuriteStorage(azurite)
    storage.reset()
    return storage
