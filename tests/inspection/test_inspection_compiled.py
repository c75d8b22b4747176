"""Compiled detectors kept on disk: the next process loads what the first compiled."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from graphtap.inspection import InspectionSettings, Inspector, Policy, compiled, hyperscan_available

pytestmark = pytest.mark.skipif(not hyperscan_available(), reason="needs the hyperscan engine")

KEY = b"k" * 32
TEXT = "card 4111 1111 1111 1111, and the IBAN GB82 WEST 1234 5698 7654 32"


def inspector() -> Inspector:
    return Inspector(InspectionSettings(hash_key=KEY, policy=Policy.default(), engine="hyperscan"))


class Counting:
    """The hyperscan module, counting the databases compiled through it."""

    def __init__(self) -> None:
        import hyperscan

        self.module = hyperscan
        self.compiled = 0

    def proxy(self) -> Any:
        outer = self

        class Database(self.module.Database):  # type: ignore[misc, name-defined]
            def compile(self, **options: Any) -> None:
                outer.compiled += 1
                super().compile(**options)

        names = ("__version__", "dumpb", "loadb", "error", "HS_MODE_BLOCK")
        return types.SimpleNamespace(
            Database=Database, **{name: getattr(self.module, name) for name in names}
        )


EXPRESSIONS, FLAGS, IDS = [rb"foo\d+", b"bar"], [0, 0], [0, 1]


def scan(database: Any, data: bytes) -> list[int]:
    import hyperscan

    found: list[int] = []
    database.scan(
        data,
        match_event_handler=lambda i, *_: found.append(i),
        scratch=hyperscan.Scratch(database),
    )
    return found


def test_a_second_process_loads_what_the_first_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    hyperscan = Counting()
    first = compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    second = compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    assert hyperscan.compiled == 1
    assert scan(first, b"foo12 bar") == scan(second, b"foo12 bar") == [0, 0, 1]
    [stored] = tmp_path.iterdir()
    assert stored.stat().st_mode & 0o077 == 0  # owner-only


def test_other_expressions_or_flags_compile_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    hyperscan = Counting()
    compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    caseless_flags = [0, hyperscan.module.HS_FLAG_CASELESS]
    caseless = compiled.database(hyperscan.proxy(), EXPRESSIONS, caseless_flags, IDS)
    compiled.database(hyperscan.proxy(), [rb"foo\d+", b"baz"], FLAGS, IDS)
    assert hyperscan.compiled == 3
    assert scan(caseless, b"BAR") == [1]
    assert len(list(tmp_path.iterdir())) == 3


def test_a_damaged_file_is_compiled_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    hyperscan = Counting()
    compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    [stored] = tmp_path.iterdir()
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    again = compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    assert hyperscan.compiled == 2
    assert "damaged" in caplog.text
    assert scan(again, b"foo1") == [0]
    compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)  # the rewrite is whole
    assert hyperscan.compiled == 2


def test_off_compiles_every_time_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    hyperscan = Counting()
    compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    assert hyperscan.compiled == 2
    assert list(tmp_path.iterdir()) == []


def test_a_cache_that_cannot_be_written_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(compiled.CACHE_ENV, str(blocked / "cache"))
    hyperscan = Counting()
    database = compiled.database(hyperscan.proxy(), EXPRESSIONS, FLAGS, IDS)
    assert scan(database, b"bar") == [1]


def test_the_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(compiled.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiled.cache_dir() == tmp_path / "graphtap"


def test_detectors_from_the_cache_find_what_compiled_ones_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "fresh"))
    fresh = inspector().inspect_text(TEXT)
    cached = inspector().inspect_text(TEXT)  # loaded from the file the first one wrote
    assert len(list((tmp_path / "fresh").iterdir())) == 1
    assert fresh == cached
    assert {f.type for f in cached.findings} == {"credit_card_number", "iban"}
