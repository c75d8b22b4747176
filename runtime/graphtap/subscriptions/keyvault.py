"""Key Vault, as the control plane needs it: the clientState secret and the encryption certificate.

The certificate is generated and renewed inside Key Vault (AutoRenew); Graph gets only its
public DER, labelled with an id that names the certificate version, so a notification tells
which version's private key decrypts it. The clientState secret is created once and never
printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets as token_source
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.secrets.aio import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from graphtap.deployment import DEFAULT_CLIENT_STATE_SECRET, DEFAULT_FINDING_HASH_KEY_SECRET
from graphtap.notifications.keyring import thumbprint

__all__ = [
    "DEFAULT_CLIENT_STATE_SECRET",
    "DEFAULT_FINDING_HASH_KEY_SECRET",
    "EncryptionCertificate",
    "KeyVault",
    "KeyVaultError",
    "SecretMissing",
]

FINDING_HASH_KEY_BYTES = 32
#: Graph documents a 128-character limit for clientState.
CLIENT_STATE_CHARS = 96


class KeyVaultError(RuntimeError):
    """Key Vault lacks what graphtap needs; the message names the vault and the object."""


class SecretMissing(KeyVaultError):
    """A secret `graphtap bootstrap` creates does not exist yet: wait, do not mint one."""


@dataclass(frozen=True, slots=True)
class EncryptionCertificate:
    name: str
    version: str
    certificate: x509.Certificate

    @property
    def certificate_id(self) -> str:
        """Graph's `encryptionCertificateId`: the certificate and its Key Vault version."""
        return f"{self.name}-{self.version}"

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.certificate)


def certificate_version_of(certificate_id: str, name: str) -> str | None:
    prefix = f"{name}-"
    return certificate_id[len(prefix) :] if certificate_id.startswith(prefix) else None


class KeyVault:
    def __init__(
        self, vault_url: str, credential: AsyncTokenCredential, **client_options: Any
    ) -> None:
        self.vault_url = vault_url
        self._secrets = SecretClient(vault_url, credential, **client_options)
        self._certificates = CertificateClient(vault_url, credential, **client_options)

    async def close(self) -> None:
        await self._secrets.close()
        await self._certificates.close()

    async def ensure_client_state(
        self, name: str = DEFAULT_CLIENT_STATE_SECRET
    ) -> tuple[str, bool]:
        """The clientState secret's value, creating it when missing; (value, created)."""
        return await self._ensure_secret(
            name,
            lambda: token_source.token_urlsafe(CLIENT_STATE_CHARS)[:CLIENT_STATE_CHARS],
            content_type="graph-client-state",
        )

    async def client_state(self, name: str = DEFAULT_CLIENT_STATE_SECRET) -> str:
        """The clientState, read only: processors must never mint their own."""
        return await self._read_secret(name, "graph-client-state")

    async def ensure_finding_hash_key(
        self, name: str = DEFAULT_FINDING_HASH_KEY_SECRET
    ) -> tuple[bytes, bool]:
        """The finding hash key (stored as hex), creating it when missing; (key, created)."""
        value, created = await self._ensure_secret(
            name,
            lambda: token_source.token_hex(FINDING_HASH_KEY_BYTES),
            content_type="graphtap-finding-hash-key",
        )
        return self._hash_key(name, value), created

    async def finding_hash_key(self, name: str = DEFAULT_FINDING_HASH_KEY_SECRET) -> bytes:
        """The finding hash key, which `graphtap bootstrap` creates; the runtime only reads."""
        return self._hash_key(name, await self._read_secret(name, "finding hash key"))

    async def put_secret(self, name: str, value: str, *, content_type: str) -> str:
        """Write `value` unless the secret already holds it: "created", "updated" or "kept"
        (a new version only when the value changed)."""
        try:
            current = (await self._secrets.get_secret(name)).value
        except ResourceNotFoundError:
            current = None
        if current == value:
            return "kept"
        await self._secrets.set_secret(name, value, content_type=content_type)
        return "created" if current is None else "updated"

    async def _read_secret(self, name: str, what: str) -> str:
        try:
            secret = await self._secrets.get_secret(name)
        except ResourceNotFoundError:
            raise SecretMissing(
                f"{self.vault_url}: {what} secret {name!r} not found; `make bootstrap` creates it"
            ) from None
        if not secret.value:
            raise KeyVaultError(f"{self.vault_url}: secret {name} is empty")
        return secret.value

    def _hash_key(self, name: str, value: str) -> bytes:
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise KeyVaultError(f"{self.vault_url}: secret {name} is not hex") from None
        if len(key) < 16:
            raise KeyVaultError(f"{self.vault_url}: secret {name} is shorter than 16 bytes")
        return key

    async def _ensure_secret(
        self, name: str, make_value: Callable[[], str], *, content_type: str
    ) -> tuple[str, bool]:
        try:
            secret = await self._secrets.get_secret(name)
        except ResourceNotFoundError:
            value = make_value()
            await self._secrets.set_secret(name, value, content_type=content_type)
            return value, True
        if not secret.value:
            raise KeyVaultError(f"{self.vault_url}: secret {name} is empty")
        return secret.value, False

    async def certificate(self, name: str, version: str | None = None) -> EncryptionCertificate:
        """The certificate's current (or a given) version, public part only."""
        try:
            if version is None:
                bundle = await self._certificates.get_certificate(name)
            else:
                bundle = await self._certificates.get_certificate_version(name, version)
        except ResourceNotFoundError:
            raise KeyVaultError(
                f"{self.vault_url}: certificate {name!r} not found; the stack creates it "
                "(deploy it, or check the certificate_name output)"
            ) from None
        if bundle.cer is None or bundle.properties is None or bundle.properties.version is None:
            raise KeyVaultError(f"{self.vault_url}: certificate {name!r} has no issued version")
        return EncryptionCertificate(
            name, bundle.properties.version, x509.load_der_x509_certificate(bytes(bundle.cer))
        )

    async def recent_certificates(self, name: str, count: int) -> list[EncryptionCertificate]:
        """The newest `count` enabled versions, newest first: after a rotation Graph keeps
        encrypting to the previous certificate for a while, and a restarted processor must
        still hold its key."""
        listed = [
            properties
            async for properties in self._certificates.list_properties_of_certificate_versions(name)
            if properties.enabled is not False and properties.version is not None
        ]
        listed.sort(key=lambda p: p.created_on or dt.datetime.min.replace(tzinfo=dt.UTC))
        newest = [p.version for p in reversed(listed) if p.version is not None][:count]
        if not newest:
            return [await self.certificate(name)]
        return [await self.certificate(name, version) for version in newest]

    async def rotate(self, name: str) -> EncryptionCertificate:
        """Issue a new version of the certificate under its own policy (as AutoRenew does)."""
        policy = await self._certificates.get_certificate_policy(name)
        await self._certificates.create_certificate(name, policy)
        return await self.certificate(name)

    async def private_key(
        self, name: str, version: str
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate | None]:
        """A version's private key, from the PKCS#12 secret Key Vault keeps beside it."""
        secret = await self._secrets.get_secret(name, version)
        if not secret.value:
            raise KeyVaultError(f"{self.vault_url}: certificate {name}/{version} has no secret")
        key, certificate, _ = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyVaultError(f"{self.vault_url}: certificate {name}/{version} is not RSA")
        return key, certificate
