from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography import x509

from graphtap.subscriptions.certificates import (
    create_certificate,
    graph_certificate_value,
    load_certificate,
)


def test_key_file_is_private_and_certificate_public(tmp_path: Path) -> None:
    files = create_certificate(tmp_path, certificate_id="c1", bits=2048)
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    assert files.key_path.name == "c1.key.pem"
    assert b"PRIVATE KEY" not in files.certificate_path.read_bytes()
    certificate = load_certificate(files.certificate_path)
    assert certificate.public_key().key_size == 2048  # type: ignore[union-attr]


def test_graph_value_is_base64_der_without_pem_armour(tmp_path: Path) -> None:
    files = create_certificate(tmp_path, certificate_id="c2")
    value = graph_certificate_value(load_certificate(files.certificate_path))
    assert "BEGIN" not in value
    assert "\n" not in value
    assert x509.load_der_x509_certificate(base64.b64decode(value))


def test_refuses_to_overwrite_and_odd_sizes(tmp_path: Path) -> None:
    create_certificate(tmp_path, certificate_id="c3")
    with pytest.raises(FileExistsError):
        create_certificate(tmp_path, certificate_id="c3")
    with pytest.raises(ValueError, match="2048 to 4096"):
        create_certificate(tmp_path, certificate_id="c4", bits=1024)
