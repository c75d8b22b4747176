"""Graph's rich-notification envelope, exactly as Graph documents it.

RSA-OAEP (SHA-1, MGF1-SHA-1) wraps a 32-byte symmetric key; HMAC-SHA256 under that key
signs the ciphertext; AES-256-CBC with the key's first 16 bytes as IV and PKCS7 padding
encrypts the UTF-8 JSON resource. The signature is checked, in constant time, before a
single byte is decrypted.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

import pybase64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as symmetric_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.model import EncryptedContent, json_object

# SHA-1 is what Graph's protocol prescribes for the OAEP key wrap, not a choice made here.
OAEP_SHA1 = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA1()),  # noqa: S303
    algorithm=hashes.SHA1(),  # noqa: S303
    label=None,
)
SYMMETRIC_KEY_BYTES = 32
#: A 4096-bit RSA ciphertext is 512 bytes: a longer dataKey cannot be Graph's.
MAX_DATA_KEY_BYTES = 512


@dataclass(slots=True)
class Envelope:
    """`encryptedContent` decoded and checked for shape: nothing verified or decrypted yet."""

    wrapped_key: bytes
    signature: bytes
    ciphertext: bytes = field(repr=False)


def decrypt_content(content: EncryptedContent, private_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """Verify and decrypt `encryptedContent`; return the resource JSON object."""
    return resource_object(decrypt_bytes(content, private_key))


def decrypt_bytes(content: EncryptedContent, private_key: rsa.RSAPrivateKey) -> bytes:
    """The decrypted resource bytes, only after the HMAC over the ciphertext verified."""
    envelope = open_envelope(content)
    return open_sealed(envelope, unwrap_key(envelope, private_key))


def open_envelope(content: EncryptedContent) -> Envelope:
    """Decode the base64 fields; what cannot be Graph's fails here, before any RSA work."""
    wrapped_key = _b64(content.data_key, "dataKey")
    if len(wrapped_key) > MAX_DATA_KEY_BYTES:
        raise NotificationError(
            Reason.MALFORMED_ENCRYPTED_CONTENT,
            f"dataKey is {len(wrapped_key)} bytes, longer than any RSA-4096 ciphertext",
        )
    if content.data_signature is None:
        raise NotificationError(
            Reason.SIGNATURE_MISMATCH, "encryptedContent has no dataSignature to verify"
        )
    signature = _b64(content.data_signature, "dataSignature")
    return Envelope(wrapped_key, signature, _b64(content.data, "data"))


def unwrap_key(envelope: Envelope, private_key: rsa.RSAPrivateKey) -> bytes:
    """RSA-OAEP (SHA-1) unwrap of the notification's own AES-256 key."""
    try:
        key = private_key.decrypt(envelope.wrapped_key, OAEP_SHA1)
    except ValueError:
        raise NotificationError(
            Reason.DECRYPTION_FAILED,
            "dataKey does not unwrap with the certificate's private key "
            "(wrong key, or the key was corrupted)",
        ) from None
    if len(key) != SYMMETRIC_KEY_BYTES:
        raise NotificationError(
            Reason.DECRYPTION_FAILED,
            f"unwrapped key is {len(key)} bytes, not the {SYMMETRIC_KEY_BYTES} of AES-256",
        )
    return key


def open_sealed(envelope: Envelope, key: bytes) -> bytes:
    """Check the HMAC-SHA256 over the ciphertext in constant time, then AES-256-CBC decrypt."""
    ciphertext = envelope.ciphertext
    if not hmac.compare_digest(hmac.digest(key, ciphertext, "sha256"), envelope.signature):
        raise NotificationError(
            Reason.SIGNATURE_MISMATCH,
            "HMAC-SHA256 of data does not match dataSignature: the content was altered",
        )
    if not ciphertext or len(ciphertext) % 16:
        raise NotificationError(
            Reason.MALFORMED_ENCRYPTED_CONTENT,
            f"data is {len(ciphertext)} bytes, not a whole number of AES blocks",
        )
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = symmetric_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise NotificationError(
            Reason.DECRYPTION_FAILED, "decrypted data has invalid PKCS7 padding"
        ) from None


def resource_object(plaintext: bytes) -> dict[str, Any]:
    """The decrypted resource as a JSON object, or a `malformed_resource` error."""
    return json_object(plaintext, Reason.MALFORMED_RESOURCE, "decrypted resource")


def encrypt_content(
    resource: bytes,
    public_key: rsa.RSAPublicKey,
    *,
    certificate_id: str,
    certificate_thumbprint: str | None = None,
    symmetric_key: bytes | None = None,
) -> dict[str, str]:
    """Encrypt a resource the way Graph does; returns the `encryptedContent` JSON object.

    `symmetric_key` exists so simulations can be reproducible; Graph draws a fresh one for
    every notification, and so does this function when it is omitted.
    """
    key = symmetric_key if symmetric_key is not None else os.urandom(SYMMETRIC_KEY_BYTES)
    if len(key) != SYMMETRIC_KEY_BYTES:
        raise ValueError(f"symmetric key must be {SYMMETRIC_KEY_BYTES} bytes, got {len(key)}")
    padder = symmetric_padding.PKCS7(128).padder()
    padded = padder.update(resource) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    content = {
        "data": binascii.b2a_base64(ciphertext, newline=False).decode("ascii"),
        "dataSignature": binascii.b2a_base64(
            hmac.new(key, ciphertext, hashlib.sha256).digest(), newline=False
        ).decode("ascii"),
        "dataKey": binascii.b2a_base64(public_key.encrypt(key, OAEP_SHA1), newline=False).decode(
            "ascii"
        ),
        "encryptionCertificateId": certificate_id,
    }
    if certificate_thumbprint is not None:
        content["encryptionCertificateThumbprint"] = certificate_thumbprint
    return content


def _b64(value: str, field: str) -> bytes:
    # Strict: no white space, no stray padding. pybase64 decodes a notification's kilobytes of
    # `data` in a fraction of binascii's time.
    try:
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NotificationError(
            Reason.MALFORMED_ENCRYPTED_CONTENT, f"{field} is not valid base64: {exc}"
        ) from None
