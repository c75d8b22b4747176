"""`graphtap inspect`: run the inspection engine over a file, for analysts and tests.

One document in (HTML, or a Graph chatMessage / Outlook message as JSON), a readable table
out; or with `--jsonl`, one `{"id": ..., "content": "<html>"}` per line in and one
`{"id": ..., "findings": [...]}` per line out. Findings never carry the values themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click
from rich.console import Console
from rich.table import Table

from graphtap.hosts.commands.options import finding_hash_key, hash_key_file_option
from graphtap.inspection import (
    InspectionResult,
    InspectionSettings,
    Inspector,
    Policy,
    PolicyError,
    load_policy,
)


@click.command()
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option(
    "--jsonl",
    is_flag=True,
    help='One {"id": ..., "content": "<html>"} per input line; one result per output line.',
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Policy TOML (e.g. runtime/environments/dev/policy.toml) [default: packaged policy].",
)
@hash_key_file_option
@click.option(
    "--engine",
    type=click.Choice(["auto", "hyperscan", "python"]),
    default="auto",
    show_default=True,
    help="Matcher: Hyperscan when importable, else pure Python.",
)
def inspect(
    source: TextIO, jsonl: bool, policy_path: Path | None, hash_key_file: Path | None, engine: str
) -> None:
    """Find sensitive information in SOURCE (a file, or - for stdin)."""
    try:
        policy = load_policy(policy_path) or Policy.default()
    except PolicyError as exc:
        raise click.UsageError(str(exc)) from None
    settings = InspectionSettings(
        hash_key=finding_hash_key(hash_key_file),
        policy=policy,
        engine=engine,  # type: ignore[arg-type]  # click.Choice guarantees the literal
    )
    inspector = Inspector(settings)
    if jsonl:
        failures = _inspect_lines(inspector, source, sys.stdout)
        if failures:
            raise click.ClickException(f"{failures} input line(s) could not be inspected")
        return
    _print_table(_inspect_document(inspector, source.read()), Console())


def _inspect_document(inspector: Inspector, document: str) -> InspectionResult:
    """JSON objects are messages (chatMessage or Outlook); anything else is HTML."""
    if document.lstrip().startswith("{"):
        try:
            message = json.loads(document)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"input looks like JSON but does not parse: {exc}") from None
        try:
            return inspector.inspect_message(message)
        except TypeError as exc:
            raise click.ClickException(f"not a message: {exc}") from None
    return inspector.inspect_html(document)


def _inspect_lines(inspector: Inspector, source: TextIO, out: TextIO) -> int:
    """Inspect each line; a bad line is reported on stderr (by number) and the rest go on."""
    failures = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("content"), str):
                raise ValueError('expected an object with a string "content"')
        except ValueError as exc:
            failures += 1
            click.echo(f"line {number}: {exc}", err=True)
            continue
        result = inspector.inspect_html(record["content"])
        out.write(json.dumps({"id": record.get("id"), "findings": _summaries(result)}) + "\n")
    return failures


def _summaries(result: InspectionResult) -> list[dict[str, Any]]:
    return [
        {"type": f.type, "confidence": f.confidence, "count": f.count, "preview": f.preview}
        for f in result.findings
    ]


def _print_table(result: InspectionResult, console: Console) -> None:
    if not result.findings:
        console.print("no findings (severity: none)")
        return
    table = Table(title=f"severity: {result.severity}")
    for column in ("type", "confidence", "count", "preview", "positions", "value hash"):
        numeric = column in ("confidence", "count")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=not numeric)
    for finding in result.findings:
        table.add_row(
            finding.type,
            str(finding.confidence),
            str(finding.count),
            finding.preview,
            ", ".join(map(str, finding.positions)),
            finding.value_hash[:16],
        )
    console.print(table)
