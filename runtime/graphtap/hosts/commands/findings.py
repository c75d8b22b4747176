"""`graphtap findings`: the verdicts with findings in a verdict store, as an analyst reads them.

One row per finding, the verdict's fields repeated: time, severity, type, confidence, the
masked preview, conversation and sender. The store is only read (SQLite: opened read-only,
never upgraded); it holds no values, so neither does anything printed here.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from graphtap.hosts.findings import (
    FIELDS,
    FindingRow,
    FindingsError,
    FindingsQuery,
    parse_since,
    read_findings,
)
from graphtap.inspection.policy import SEVERITIES

DEFAULT_SINK = "sqlite:verdicts.sqlite"


def _sink(value: str) -> tuple[str, Path]:
    kind, separator, path = value.partition(":")
    if not separator or kind not in ("sqlite", "jsonl") or not path:
        raise click.BadParameter(f"{value!r}: give sqlite:FILE or jsonl:FILE", param_hint="--sink")
    return kind, Path(path)


@click.command()
@click.option(
    "--sink",
    default=DEFAULT_SINK,
    show_default=True,
    help="The verdict store to read: sqlite:FILE (read-only) or jsonl:FILE.",
)
@click.option(
    "--since", default=None, help="ISO time (UTC unless it says) or a duration: 30m, 1h, 7d."
)
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only this finding type (repeatable), e.g. credit_card_number.",
)
@click.option(
    "--severity",
    type=click.Choice(SEVERITIES),
    default=None,
    help="Only verdicts of this severity or above (low < medium < high < critical).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many rows.")
def findings(
    sink: str,
    since: str | None,
    types: tuple[str, ...],
    severity: str | None,
    output: str,
    limit: int | None,
) -> None:
    """List the findings of the verdicts in a store, newest first; values stay masked."""
    kind, path = _sink(sink)
    try:
        query = FindingsQuery(
            since=parse_since(since) if since is not None else None,
            types=frozenset(types),
            min_severity=severity,
            limit=limit,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        rows = read_findings(kind, path, query)
    except FindingsError as exc:
        raise click.ClickException(str(exc)) from None
    if output == "jsonl":
        for row in rows:
            click.echo(json.dumps(row.to_dict(), ensure_ascii=False))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.to_dict() for row in rows)
    else:
        console = Console()
        if not rows:
            console.print(f"No findings in {path} match.", markup=False)
            return
        console.print(findings_table(rows, title=f"findings in {path} (values masked)"))


def findings_table(rows: list[FindingRow], *, title: str) -> Table:
    table = Table(title=title)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("severity")
    table.add_column("type")
    table.add_column("confidence", justify="right")
    table.add_column("count", justify="right")
    table.add_column("preview", no_wrap=True)
    table.add_column("conversation", overflow="fold")
    table.add_column("sender", overflow="fold")
    table.add_column("action", overflow="fold")
    for row in rows:
        cells = (
            f"{row.time:%Y-%m-%d %H:%M:%S}",
            row.severity,
            row.type,
            str(row.confidence),
            str(row.count),
            row.preview,
            row.conversation_id or "-",
            row.sender_id or "-",
            row.action or "-",
        )
        table.add_row(*(Text(cell) for cell in cells))  # as text: ids are never markup
    return table
