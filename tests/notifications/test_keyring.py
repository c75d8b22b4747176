"""The key ring picks the key a notification names, in every format operators hold keys in."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from graphtap.notifications.crypto import decrypt_content, encrypt_content
from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.keyring import KeyRing, KeyRingError, thumbprint
from graphtap.notifications.model import EncryptedContent
from graphtap.subscriptions.certificates import (
    CertificateFiles,
    create_certificate,
    load_certificate,
)
from tests.conftest import GraphVector


def _content(certificate_id: str | None, thumb: str | None = None) -> EncryptedContent:
    return EncryptedContent("AAAA", "AAAA", "AAAA", certificate_id, thumb)


def test_graph_vector_decrypts_through_a_pkcs12_bundle_with_password(
    graph_vector: GraphVector, tmp_path: Path
) -> None:
    bundle = tmp_path / "custom-id-for-testing.pfx"
    bundle.write_bytes(graph_vector.pkcs12)
    ring = KeyRing.load([bundle], password=graph_vector.password)
    entry = ring.key_for(graph_vector.encrypted_content())
    assert entry.certificate_id == "custom-id-for-testing"
    # The vector's certificate expired in 2023: Graph ignores validity, and so must we.
    resource = decrypt_content(graph_vector.encrypted_content(), entry.private_key)
    assert resource["etag"] == graph_vector.expected["etag"]


def test_thumbprint_is_sha1_of_der_upper_hex(graph_vector: GraphVector) -> None:
    assert (
        thumbprint(graph_vector.certificate)
        == graph_vector.content["encryptionCertificateThumbprint"]
    )


def test_falls_back_to_the_thumbprint_when_the_id_is_unknown(graph_vector: GraphVector) -> None:
    ring = KeyRing()
    ring.add(graph_vector.key, certificate_id="renamed", certificate=graph_vector.certificate)
    content = graph_vector.content
    entry = ring.key_for(
        _content("some-other-id", content["encryptionCertificateThumbprint"].lower())
    )
    assert entry.certificate_id == "renamed"


def test_unknown_certificate_names_the_id() -> None:
    ring = KeyRing()
    with pytest.raises(NotificationError) as error:
        ring.key_for(_content("retired-2024", "00" * 20))
    assert error.value.reason is Reason.UNKNOWN_CERTIFICATE
    assert "retired-2024" in error.value.message


def test_loads_pkcs8_key_named_by_id(certificate_files: CertificateFiles) -> None:
    ring = KeyRing.load([certificate_files.key_path])
    entry = ring.key_for(_content("test-cert"))
    assert entry.thumbprint == certificate_files.thumbprint  # the certificate beside it was found


def test_loads_pkcs1_key_matched_by_the_certificate_beside_it(
    certificate_files: CertificateFiles, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(certificate_files.key_path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    (tmp_path / "operator-key.pem").write_bytes(pkcs1)
    (tmp_path / "prod-2026.cert.pem").write_bytes(certificate_files.certificate_path.read_bytes())
    ring = KeyRing.load([tmp_path])
    assert [e.certificate_id for e in ring.entries()] == ["prod-2026"]


def test_encrypted_pem_needs_its_password(
    certificate_files: CertificateFiles, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(certificate_files.key_path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    path = tmp_path / "locked.key.pem"
    path.write_bytes(locked)
    with pytest.raises(KeyRingError, match=r"locked\.key\.pem"):
        KeyRing.load([path])
    assert len(KeyRing.load([path], password=b"s3cret")) == 1


def test_a_key_without_a_name_or_certificate_is_refused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "mystery.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyRingError, match="cannot tell which certificate id"):
        KeyRing.load([tmp_path])


def test_a_certificate_of_another_key_is_refused(certificate_files: CertificateFiles) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(KeyRingError, match="does not belong"):
        KeyRing().add(
            other,
            certificate_id="x",
            certificate=load_certificate(certificate_files.certificate_path),
        )


def test_holds_old_and_new_keys_during_rotation(tmp_path: Path) -> None:
    old = create_certificate(tmp_path, certificate_id="2025")
    new = create_certificate(tmp_path, certificate_id="2026", bits=3072)
    bundle = tmp_path / "extra.pfx"
    extra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bundle.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"extra", extra_key, None, None, serialization.BestAvailableEncryption(b"pw")
        )
    )
    ring = KeyRing.load([tmp_path], password=b"pw")
    assert sorted(e.certificate_id for e in ring.entries()) == ["2025", "2026", "extra"]
    for files in (old, new):
        certificate = load_certificate(files.certificate_path)
        public = certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        raw = encrypt_content(b'{"id": "1"}', public, certificate_id=files.certificate_id)
        content = EncryptedContent(
            raw["data"], raw["dataKey"], raw["dataSignature"], files.certificate_id, None
        )
        assert decrypt_content(content, ring.key_for(content).private_key) == {"id": "1"}
        assert ring.last_used(files.certificate_id) is not None
    ring.remove("2025")
    with pytest.raises(NotificationError):
        ring.key_for(_content("2025"))


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sealed_for(
    public: rsa.RSAPublicKey, certificate_id: str, thumb: str | None
) -> EncryptedContent:
    raw = encrypt_content(b'{"id": "1"}', public, certificate_id=certificate_id)
    return EncryptedContent(
        raw["data"], raw["dataKey"], raw["dataSignature"], certificate_id, thumb
    )


def test_a_key_file_replaced_under_its_name_is_picked_up_without_a_certificate(
    tmp_path: Path,
) -> None:
    """A bare key has no thumbprint to compare: the refresh compares the keys themselves."""
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    path = tmp_path / "k1.key.pem"
    path.write_bytes(_pem(old))
    now = [0.0]
    ring = KeyRing.load([tmp_path])
    ring.clock = lambda: now[0]
    path.write_bytes(_pem(new) + b"\n")
    now[0] = ring.refresh_interval + 1
    assert ring.refresh()
    content = _sealed_for(new.public_key(), "k1", None)
    assert decrypt_content(content, ring.key_for(content).private_key) == {"id": "1"}


def test_the_thumbprint_picks_a_key_replaced_under_the_same_id(tmp_path: Path) -> None:
    """Graph names the certificate by id and thumbprint and may keep encrypting to the old
    one for a while: a key loaded again under the same id does not hide the old one."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    create_certificate(first, certificate_id="same")
    create_certificate(second, certificate_id="same")
    ring = KeyRing.load([first])
    ring.load_into(second)
    for folder in (first, second):
        certificate = load_certificate(folder / "same.cert.pem")
        public = certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        content = _sealed_for(public, "same", thumbprint(certificate))
        assert decrypt_content(content, ring.key_for(content).private_key) == {"id": "1"}
    ring.remove("same")  # both go with their id
    old = load_certificate(first / "same.cert.pem")
    with pytest.raises(NotificationError):
        ring.key_for(_content("same", thumbprint(old)))


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="nope"):
        KeyRing.load([tmp_path / "nope"])


class _Clocks:
    """A monotonic clock and a wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.wall = 1_767_225_600.0

    def monotonic(self) -> float:
        return self.elapsed

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds
        self.wall += seconds


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["wall back an hour", "wall ahead"])
def test_a_wall_clock_step_changes_no_interval_of_the_ring(tmp_path: Path, step: float) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    create_certificate(keys, certificate_id="2025")
    clocks = _Clocks()
    ring = KeyRing.load([keys])
    ring.clock, ring.wall_clock = clocks.monotonic, clocks.time
    ring.refresh_interval, ring.retire_grace = 5.0, 600.0
    assert not ring.refresh()  # the first look: nothing new
    clocks.wall += step
    create_certificate(keys, certificate_id="2026")  # a rotation lands
    clocks.advance(4.9)
    assert not ring.refresh()  # not yet time to look
    clocks.advance(0.1)
    assert ring.refresh()  # exactly one interval later, whatever the wall clock did
    assert {e.certificate_id for e in ring.entries()} == {"2025", "2026"}

    ring.key_for(_content("2025"))
    assert ring.last_used("2025") == clocks.wall  # dated on the wall clock
    (keys / "2025.key.pem").unlink()
    (keys / "2025.cert.pem").unlink()
    clocks.advance(5.0)
    ring.refresh()  # the key left its file: the grace starts
    clocks.wall -= step  # the wall clock steps back again
    clocks.advance(595.0)
    ring.refresh()
    assert "2025" in {e.certificate_id for e in ring.entries()}  # within the grace
    clocks.advance(5.0)
    assert ring.refresh()  # the next look, the grace just over
    assert {e.certificate_id for e in ring.entries()} == {"2026"}
