"""Decryption exactly as Graph documents it, proven on Graph's own vector and by properties."""

from __future__ import annotations

import base64
import binascii

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from graphtap.notifications.crypto import decrypt_bytes, decrypt_content, encrypt_content
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.model import EncryptedContent
from tests.conftest import GraphVector

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _content(raw: dict[str, str]) -> EncryptedContent:
    return EncryptedContent(
        raw["data"],
        raw["dataKey"],
        raw.get("dataSignature"),
        raw.get("encryptionCertificateId"),
        raw.get("encryptionCertificateThumbprint"),
    )


def test_decrypts_graphs_own_vector(graph_vector: GraphVector) -> None:
    resource = decrypt_content(graph_vector.encrypted_content(), graph_vector.key)
    assert resource["etag"] == graph_vector.expected["etag"]
    assert resource["body"]["content"] == graph_vector.expected["body.content"]
    assert resource["body"]["contentType"] == graph_vector.expected["body.contentType"]


def test_vector_with_altered_signature_is_rejected(graph_vector: GraphVector) -> None:
    raw = dict(graph_vector.content)
    signature = bytearray(base64.b64decode(raw["dataSignature"]))
    signature[0] ^= 1
    raw["dataSignature"] = base64.b64encode(bytes(signature)).decode()
    with pytest.raises(NotificationError) as error:
        decrypt_content(_content(raw), graph_vector.key)
    assert error.value.reason is Reason.SIGNATURE_MISMATCH


def test_missing_signature_is_not_decrypted() -> None:
    raw = encrypt_content(b"{}", _KEY.public_key(), certificate_id="c")
    del raw["dataSignature"]
    with pytest.raises(NotificationError) as error:
        decrypt_content(_content(raw), _KEY)
    assert error.value.reason is Reason.SIGNATURE_MISMATCH


def test_wrong_private_key_fails_to_unwrap() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raw = encrypt_content(b"{}", _KEY.public_key(), certificate_id="c")
    with pytest.raises(NotificationError) as error:
        decrypt_content(_content(raw), other)
    assert error.value.reason is Reason.DECRYPTION_FAILED


@pytest.mark.parametrize("field", ["data", "dataKey", "dataSignature"])
def test_bad_base64_is_malformed_content(field: str) -> None:
    raw = encrypt_content(b"{}", _KEY.public_key(), certificate_id="c")
    raw[field] = "not*base64!"
    with pytest.raises(NotificationError) as error:
        decrypt_content(_content(raw), _KEY)
    assert error.value.reason is Reason.MALFORMED_ENCRYPTED_CONTENT
    assert field in error.value.message


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [(b"\xff\xfe not utf-8", Reason.MALFORMED_RESOURCE), (b"[1, 2]", Reason.MALFORMED_RESOURCE)],
)
def test_plaintext_must_be_a_json_object(plaintext: bytes, reason: Reason) -> None:
    raw = encrypt_content(plaintext, _KEY.public_key(), certificate_id="c")
    with pytest.raises(NotificationError) as error:
        decrypt_content(_content(raw), _KEY)
    assert error.value.reason is reason


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=4096))
def test_round_trip(plaintext: bytes) -> None:
    raw = encrypt_content(plaintext, _KEY.public_key(), certificate_id="c")
    assert decrypt_bytes(_content(raw), _KEY) == plaintext


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(min_size=1, max_size=512),
    field=st.sampled_from(["data", "dataKey", "dataSignature"]),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_changed_byte_is_rejected_never_decrypted(
    plaintext: bytes, field: str, position: int, flip: int
) -> None:
    raw = encrypt_content(plaintext, _KEY.public_key(), certificate_id="c")
    decoded = bytearray(binascii.a2b_base64(raw[field]))
    decoded[position % len(decoded)] ^= flip
    raw[field] = base64.b64encode(bytes(decoded)).decode()
    with pytest.raises(NotificationError) as error:
        decrypt_bytes(_content(raw), _KEY)
    assert error.value.reason in {Reason.SIGNATURE_MISMATCH, Reason.DECRYPTION_FAILED}


def test_signature_is_checked_before_decryption(mocker: object) -> None:
    """A tampered ciphertext never reaches the AES decryptor."""
    import graphtap.notifications.crypto as crypto

    raw = encrypt_content(b'{"a": 1}', _KEY.public_key(), certificate_id="c")
    data = bytearray(base64.b64decode(raw["data"]))
    data[-1] ^= 0x80
    raw["data"] = base64.b64encode(bytes(data)).decode()
    cipher = mocker.spy(crypto, "Cipher")  # type: ignore[attr-defined]
    with pytest.raises(NotificationError):
        decrypt_bytes(_content(raw), _KEY)
    cipher.assert_not_called()


def test_encrypt_rejects_a_short_symmetric_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_content(b"{}", _KEY.public_key(), certificate_id="c", symmetric_key=b"short")
