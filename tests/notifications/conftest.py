from __future__ import annotations

import pytest

from graphtap.subscriptions.certificates import CertificateFiles, create_certificate


@pytest.fixture(scope="session")
def certificate_files(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return create_certificate(tmp_path_factory.mktemp("keys"), certificate_id="test-cert")
