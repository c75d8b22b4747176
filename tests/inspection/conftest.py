"""Every detection test runs through both engines: Hyperscan and pure Python."""

from __future__ import annotations

import pytest

from graphtap.inspection import InspectionSettings, Inspector, Policy

KEY = bytes(range(32))
ENGINES = ("hyperscan", "python")


@pytest.fixture(scope="session", params=ENGINES)
def inspector(request: pytest.FixtureRequest) -> Inspector:
    return Inspector(
        InspectionSettings(hash_key=KEY, policy=Policy.default(), engine=request.param)
    )


@pytest.fixture(scope="session")
def inspectors() -> dict[str, Inspector]:
    return {
        name: Inspector(InspectionSettings(hash_key=KEY, engine=name))  # type: ignore[arg-type]
        for name in ENGINES
    }
