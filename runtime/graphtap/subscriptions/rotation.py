"""Key rotation on the processor's side: hand it the new key first, retire the old one last.

Graph may keep encrypting to the old certificate for a while after a re-key, so the new
private key is written beside the old one before any subscription moves, and the old one
is removed only once no notification has used it for a grace period. The processor's key
ring picks both changes up without a restart (`KeyRing.refresh`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from graphtap.notifications.keyring import KEY_SUFFIX
from graphtap.subscriptions.certificates import CERT_SUFFIX, write_private_key
from graphtap.subscriptions.keyvault import EncryptionCertificate, KeyVault


class KeyFolderPublisher:
    """Writes each new certificate version's key into the processor's key folder.

    For deployments whose processor reads a folder of `ID.key.pem` files (local runs, the
    demo); a processor in Azure reads the same versions from Key Vault itself.
    """

    def __init__(self, keyvault: KeyVault, folder: Path) -> None:
        self._keyvault = keyvault
        self.folder = folder

    async def __call__(self, certificate: EncryptionCertificate) -> None:
        key, _ = await self._keyvault.private_key(certificate.name, certificate.version)
        self.folder.mkdir(parents=True, exist_ok=True)
        key_path = self.folder / f"{certificate.certificate_id}{KEY_SUFFIX}"
        if not key_path.exists():
            write_private_key(key_path, key)
        certificate_path = self.folder / f"{certificate.certificate_id}{CERT_SUFFIX}"
        certificate_path.write_bytes(
            certificate.certificate.public_bytes(serialization.Encoding.PEM)
        )


def retire_keys(
    folder: Path,
    *,
    current: str,
    last_used: Mapping[str, float],
    retired_at: float,
    grace: float,
    now: float,
) -> list[str]:
    """Remove the key files of certificates other than `current` unused for `grace` seconds.

    `last_used` is the processor's record of when each certificate id last decrypted a
    notification (the runner's `Summary.certificates_used`); `retired_at` is when the
    subscriptions moved off the old certificates. Returns the ids removed.
    """
    removed = []
    for key_path in sorted(folder.glob(f"*{KEY_SUFFIX}")):
        certificate_id = key_path.name[: -len(KEY_SUFFIX)]
        if certificate_id == current:
            continue
        if now - max(retired_at, last_used.get(certificate_id, 0.0)) < grace:
            continue
        key_path.unlink()
        (folder / f"{certificate_id}{CERT_SUFFIX}").unlink(missing_ok=True)
        removed.append(certificate_id)
    return removed
