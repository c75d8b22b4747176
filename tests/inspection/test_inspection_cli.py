"""`graphtap inspect`: table for one document, JSON lines for many, keys from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphtap.hosts.cli import cli

CARD_HTML = "<p>visa 4111 <b>1111</b> 1111 1111</p><p>SSN: 536-22-1844</p>"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_table_for_one_html_document(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "message.html"
    source.write_text(CARD_HTML)
    result = runner.invoke(cli, ["inspect", str(source)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "credit_card_number" in result.stdout
    assert "us_social_security_number" in result.stdout
    assert "severity: high" in result.stdout
    assert "4111 1111" not in result.stdout
    assert "536-22-1844" not in result.stdout
    assert "random key for this run only" in result.stderr


def test_a_json_message_document(runner: CliRunner) -> None:
    message = {"subject": "IBAN GB82WEST12345698765432", "body": {"contentType": "text"}}
    result = runner.invoke(cli, ["inspect", "-"], input=json.dumps(message))
    assert result.exit_code == 0, result.output
    assert "iban" in result.stdout


def test_jsonl_lines_in_and_out(runner: CliRunner, tmp_path: Path) -> None:
    key_file = tmp_path / "hash.key"
    key_file.write_text("00" * 32)
    lines = "\n".join(
        json.dumps(record)
        for record in (
            {"id": "a", "content": CARD_HTML},
            {"id": 7, "content": "<p>nothing to see</p>"},
        )
    )
    result = runner.invoke(
        cli, ["inspect", "--jsonl", "--hash-key-file", str(key_file), "-"], input=lines + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "random key" not in result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["id"] for record in out] == ["a", 7]
    assert out[1]["findings"] == []
    assert out[0]["findings"] == [
        {"type": "credit_card_number", "confidence": 85, "count": 1, "preview": "****1111"},
        {"type": "us_social_security_number", "confidence": 85, "count": 1, "preview": "****44"},
    ]


def test_bad_jsonl_lines_are_named_and_the_rest_still_inspected(runner: CliRunner) -> None:
    lines = 'not json\n{"id": 1}\n{"id": 2, "content": "<p>SSN 536-22-1844</p>"}\n'
    result = runner.invoke(
        cli, ["inspect", "--jsonl", "-"], input=lines, env={"GRAPHTAP_FINDING_HASH_KEY": "ab" * 16}
    )
    assert result.exit_code == 1
    assert "line 1:" in result.stderr
    assert "line 2:" in result.stderr
    assert "2 input line(s)" in result.stderr
    assert json.loads(result.stdout)["id"] == 2


def test_policy_option_and_its_errors(runner: CliRunner, tmp_path: Path) -> None:
    strict = tmp_path / "policy.toml"
    strict.write_text("[default]\nmin_confidence = 85\n")
    result = runner.invoke(
        cli, ["inspect", "--policy", str(strict), "-"], input="here 4111111111111111 now"
    )
    assert result.exit_code == 0, result.output
    assert "no findings" in result.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text("[types.nope]\n")
    result = runner.invoke(cli, ["inspect", "--policy", str(broken), "-"], input="x")
    assert result.exit_code == 2
    assert "unknown type" in result.stderr


def test_engine_option(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["inspect", "--engine", "python", "-"], input="SSN 536-22-1844")
    assert result.exit_code == 0, result.output
    assert "us_social_security_number" in result.stdout


def test_a_cut_list_is_said_with_the_whole_count(runner: CliRunner, tmp_path: Path) -> None:
    repeated = "<p>" + "visa 4111 1111 1111 1111 " * 150 + "</p>"
    lines = json.dumps({"id": "many", "content": repeated}) + "\n"
    result = runner.invoke(
        cli, ["inspect", "--jsonl", "-"], input=lines, env={"GRAPHTAP_FINDING_HASH_KEY": "ab" * 16}
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["findings_truncated"], record["finding_total"]) == (True, 1)
    assert record["findings"][0]["count"] == 150  # positions are cut, the count is not
    source = tmp_path / "many.html"
    source.write_text(repeated)
    table = runner.invoke(cli, ["inspect", str(source)], env={"COLUMNS": "400"})
    assert "lists cut at 100 findings and 100 positions each" in table.stdout
