"""`graphtap inspect`: run the inspection engine over a file, for analysts and tests.

One document in (HTML, or a Graph chatMessage / Outlook message as JSON), a readable table
out; or with `--jsonl`, one `{"id": ..., "content": "<html>"}` per line in and one
`{"id": ..., "findings": [...]}` per line out. Findings never carry the values themselves.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click
from rich.console import Console
from rich.table import Table

from graphtap.hosts.commands.options import (
    HASH_KEY_ENV,
    finding_hash_key,
    hash_key_file_option,
)
from graphtap.inspection import (
    MAX_FINDINGS,
    MAX_POSITIONS,
    InspectionResult,
    InspectionSettings,
    Inspector,
    Policy,
    PolicyError,
    load_policy,
)
from graphtap.inspection.custom import NORMALISERS
from graphtap.inspection.findings import ValueHasher
from graphtap.inspection.text import normalise as normalise_text


@click.command()
@click.argument("source", type=click.File("rb"))
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
    source: BinaryIO,
    jsonl: bool,
    policy_path: Path | None,
    hash_key_file: Path | None,
    engine: str,
) -> None:
    """Find sensitive information in SOURCE (a file, or - for stdin), UTF-8 text."""
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
    name = getattr(source, "name", "-")
    _print_table(_inspect_document(inspector, _utf8(source.read(), str(name))), Console())


def _utf8(data: bytes, where: str) -> str:
    """Text from UTF-8 bytes; anything else is one clear error naming where and which byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{where} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}; "
            "convert it to UTF-8 (e.g. iconv -t UTF-8) and run again"
        ) from None


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


def _inspect_lines(inspector: Inspector, source: BinaryIO, out: TextIO) -> int:
    """Inspect each line; a bad line is reported on stderr (by number) and the rest go on."""
    failures = 0
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            line = _utf8(raw, f"line {number}")
        except click.ClickException as exc:
            failures += 1
            click.echo(exc.message, err=True)
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
        summary = {"id": record.get("id"), "findings": _summaries(result)}
        if result.truncated:  # never a silent cut: say so, with the whole count
            summary |= {"findings_truncated": True, "finding_total": result.finding_total}
        out.write(json.dumps(summary) + "\n")
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
    if result.truncated:
        table.caption = (
            f"findings: {result.finding_total} in all; lists cut at {MAX_FINDINGS} findings"
            f" and {MAX_POSITIONS} positions each (counts are whole)"
        )
    console.print(table)


@click.command("edm-hash")
@click.option(
    "--normalise",
    type=click.Choice(sorted(NORMALISERS)),
    default="none",
    show_default=True,
    help="As the [exact_data.<name>] table that will use the list says.",
)
@hash_key_file_option
def edm_hash(normalise: str, hash_key_file: Path | None) -> None:
    """An exact-data list from values on stdin (one a line): their HMACs, never the values.

    The HMACs are under the environment's finding hash key, so the list only matches in that
    environment, and a finding's value_hash is the line that matched."""
    if hash_key_file is None and HASH_KEY_ENV not in os.environ:
        raise click.UsageError(
            f"an exact-data list needs the environment's key: --hash-key-file or ${HASH_KEY_ENV}"
        )
    hasher = ValueHasher(finding_hash_key(hash_key_file))
    normaliser = NORMALISERS[normalise]
    seen: set[str] = set()
    for line in sys.stdin:
        value = line.strip()
        if not value:
            continue
        digest = hasher(normaliser(normalise_text(value)))
        if digest not in seen:
            seen.add(digest)
            click.echo(digest)
