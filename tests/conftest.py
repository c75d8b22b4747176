"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the project root: platform test vectors that are not copied in."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the test suite reads Graph's own vectors from it")
    return SHARED
