"""The notification encryption certificate: Graph encrypts to it, graphtap decrypts with its key.

In Azure the certificate is generated inside Key Vault; locally `graphtap keys create` makes
a self-signed one (Graph does not check the issuer). Graph wants only the public part, as
base64 of the DER certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from graphtap.notifications.keyring import KEY_SUFFIX, thumbprint

ALLOWED_BITS = (2048, 3072, 4096)
CERT_SUFFIX = ".cert.pem"


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    certificate_id: str
    key_path: Path
    certificate_path: Path
    thumbprint: str


def new_certificate_id() -> str:
    """A fresh, sortable label: Graph echoes it as `encryptionCertificateId` (max 128 chars)."""
    return f"graphtap-{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(4)}"


def create_certificate(
    out_dir: Path,
    *,
    certificate_id: str | None = None,
    bits: int = 2048,
    valid_days: int = 365,
) -> CertificateFiles:
    """Write `ID.key.pem` (PKCS#8, mode 0600) and `ID.cert.pem`; refuse to overwrite either."""
    if bits not in ALLOWED_BITS:
        raise ValueError(
            f"Graph accepts RSA keys of 2048 to 4096 bits; choose one of {ALLOWED_BITS}"
        )
    certificate_id = certificate_id or new_certificate_id()
    if not certificate_id or len(certificate_id) > 128 or "/" in certificate_id:
        raise ValueError("certificate id must be 1-128 characters without '/'")
    key_path = out_dir / f"{certificate_id}{KEY_SUFFIX}"
    certificate_path = out_dir / f"{certificate_id}{CERT_SUFFIX}"
    for path in (key_path, certificate_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another --id or remove it first")

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"graphtap {certificate_id}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_key(key_path, key)
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateFiles(certificate_id, key_path, certificate_path, thumbprint(certificate))


def write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """Write `key` as PKCS#8 PEM, mode 0600, appearing whole or not at all, never overwriting.

    A key ring may be reading the folder at that moment: the key is written under a name it
    ignores, then linked into place, so it never sees half a key.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        os.link(partial, path)  # fails if `path` exists: a key is never replaced in place
    finally:
        partial.unlink(missing_ok=True)


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not an X.509 certificate (PEM or DER): {exc}") from None


def graph_certificate_value(certificate: x509.Certificate) -> str:
    """The subscription's `encryptionCertificate`: base64 of the DER certificate, no key."""
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
