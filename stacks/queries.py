"""The KQL the stack deploys, one file per query in `stacks/kql/`, read at synth: queries are
reviewed, diffed and tested as KQL, not as Python strings."""

from __future__ import annotations

from pathlib import Path

KQL_DIR = Path(__file__).resolve().parent / "kql"


def query(name: str) -> str:
    """The text of `stacks/kql/<name>.kql`, comments included (KQL keeps `//` lines)."""
    path = KQL_DIR / f"{name}.kql"
    if not path.is_file():
        raise FileNotFoundError(f"no query {path}: every KQL the stack deploys lives in {KQL_DIR}")
    return path.read_text(encoding="utf-8").strip() + "\n"
