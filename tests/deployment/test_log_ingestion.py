"""The Log Analytics sink through the real `azure-monitor-ingestion` client, against the fake
Logs Ingestion API built from `prod`'s synthesized rule: rows as the stream declares them,
requests under the size limit, throttling and outages retried, refusals said plainly."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.ingestion.aio import LogsIngestionClient

from graphtap.inspection import InspectionSettings, Inspector, Policy
from graphtap.processing.committer import BlockingVerdicts
from graphtap.processing.sinks import loganalytics
from graphtap.processing.sinks.eventhubs import RetryPolicy
from graphtap.processing.sinks.fanout import FanOutVerdicts
from graphtap.processing.sinks.loganalytics import (
    VERDICT_COLUMNS,
    VERDICT_STREAM,
    VERDICT_TABLE,
    LogAnalyticsVerdictSink,
    LogsIngestionRefused,
    LogsIngestionTarget,
    LogsIngestionUnavailable,
)
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.verdicts import Verdict, verdict_key
from graphtap.simulation.values import luhn_complete
from tests.fakes.authorization import DEPLOYER, RUNTIME, Authority, Estate
from tests.fakes.logs_ingestion import FakeLogsIngestion, SchemaError
from tests.stacks.conftest import SynthesizedStack

FAST = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.002)
CARD = "4111 1111 1111 1111"
SECRET = "AKIAIOSFODNN7EXAMPLE"
RULE_ID_TAIL = "/providers/Microsoft.Insights/dataCollectionRules/dcr-gtap-prod-weu"


@pytest.fixture(scope="module")
def estate(prod: SynthesizedStack) -> Estate:
    return Estate.from_stack(prod.document)


@pytest.fixture
def authority(estate: Estate) -> Authority:
    return Authority(estate)


@pytest.fixture
def service(estate: Estate, authority: Authority) -> FakeLogsIngestion:
    return FakeLogsIngestion.from_estate(estate, authority)


@pytest.fixture
def target(estate: Estate) -> LogsIngestionTarget:
    outputs = estate.outputs()
    return LogsIngestionTarget(
        outputs["logs_ingestion_endpoint"],
        outputs["logs_dcr_id"],
        environment="prod",
        stream=outputs["logs_stream"],
    )


def verdict(number: int, *, findings: tuple[dict[str, Any], ...] = ()) -> Verdict:
    message_id = f"m{number}"
    resource = f"chats('19:c{number % 7}@thread.v2')/messages('{message_id}')"
    return Verdict(
        key=verdict_key("tenant", resource, message_id, "created", "1"),
        tenant_id="tenant",
        subscription_id="s",
        change_type="created",
        resource=resource,
        message_id=message_id,
        conversation_id=f"19:c{number % 7}@thread.v2",
        version="1",
        sender_id="u",
        content="inspected",
        severity="high" if findings else "none",
        findings=findings,
        certificate_id="c",
        partition=str(number % 4),
        offset=number,
        processed_at=1_780_000_000.0 + number,
    )


@functools.cache
def inspected_findings() -> tuple[dict[str, Any], ...]:
    """What inspection makes of a message with a card number and a cloud key in it."""
    inspector = Inspector(InspectionSettings(hash_key=b"k" * 32, policy=Policy.default()))
    result = inspector.inspect_text(f"card {CARD} and key {SECRET} for the deploy")
    assert result.findings, "the message must have findings for this test to mean anything"
    return tuple(result.to_dict()["findings"])


def sink(
    authority: Authority,
    service: FakeLogsIngestion,
    target: LogsIngestionTarget,
    principal: str = RUNTIME,
    **options: Any,
) -> LogAnalyticsVerdictSink:
    options.setdefault("retry", FAST)
    return LogAnalyticsVerdictSink(
        target,
        credential=authority.credential(principal),
        transport=service.transport(),
        **options,
    )


def write(target_sink: LogAnalyticsVerdictSink, verdicts: list[Verdict]) -> int:
    async def run() -> int:
        try:
            return await target_sink.write_verdicts(verdicts)
        finally:
            await target_sink.close()

    return asyncio.run(run())


def test_the_fake_takes_the_stream_and_table_from_the_synthesized_rule(
    service: FakeLogsIngestion,
) -> None:
    (rule,) = service.rules.values()
    declared = {c.name: c.type for c in VERDICT_COLUMNS}
    assert rule.streams == {VERDICT_STREAM: declared}
    assert rule.outputs == {VERDICT_STREAM: VERDICT_TABLE}
    assert rule.resource_id.endswith(RULE_ID_TAIL)
    assert rule.endpoint_host is not None
    assert rule.endpoint_host.endswith(".ingest.monitor.azure.com")


def test_a_rule_whose_table_disagrees_is_refused_at_deploy(prod: SynthesizedStack) -> None:
    document = json.loads(json.dumps(prod.document))
    (table,) = document["resource"]["azurerm_log_analytics_workspace_table_custom_log"].values()
    next(c for c in table["column"] if c["name"] == "FindingTotal")["type"] = "string"
    with pytest.raises(SchemaError, match="FindingTotal"):
        FakeLogsIngestion.from_estate(Estate.from_stack(document))


def test_one_row_per_verdict_with_the_streams_columns_and_no_raw_values(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    findings = inspected_findings()
    verdicts = [verdict(n, findings=findings if n % 3 == 0 else ()) for n in range(30)]
    assert write(sink(authority, service, target), verdicts) == 30
    rows = service.rows(VERDICT_TABLE)
    assert [row["VerdictKey"] for row in rows] == [v.key for v in verdicts]
    assert all(list(row) == [c.name for c in VERDICT_COLUMNS] for row in rows)
    first = rows[0]
    assert first["TimeGenerated"] == "2026-05-28T20:26:40.000000Z"
    assert first["Findings"] == list(findings)
    assert first["FindingTotal"] == len(findings)
    assert first["Severity"] == "high"
    assert first["Environment"] == "prod"
    assert first["Offset"] == "0"
    assert first["Partition"] == "0"
    text = json.dumps(rows)
    for raw in (CARD, CARD.replace(" ", ""), SECRET):
        assert raw not in text
    assert authority.denied == []


def test_the_findings_of_the_worst_message_fit_the_fields_limit_whole(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    """A hundred card numbers, each many times: inspection lists them all with their
    positions, more than one field takes (the service would cut the JSON). The row leaves the
    positions out and says so; every finding is still listed and counted."""
    inspector = Inspector(InspectionSettings(hash_key=b"k" * 32, policy=Policy.default()))
    cards = [luhn_complete(f"4111111100{n:05d}") for n in range(100)]
    text = "\n".join(f"row {row}: card {card}" for row in range(80) for card in cards)
    findings = tuple(inspector.inspect_text(text).to_dict()["findings"])
    assert len(json.dumps(findings)) > loganalytics.MAX_FIELD_BYTES
    assert write(sink(authority, service, target), [verdict(1, findings=findings)]) == 1
    [row] = service.rows(VERDICT_TABLE)
    assert isinstance(row["Findings"], list)  # parsed: nothing was cut
    assert [f["value_hash"] for f in row["Findings"]] == [f["value_hash"] for f in findings]
    assert all("positions" not in f for f in row["Findings"])
    assert (row["FindingsTruncated"], row["FindingTotal"]) == (True, len(findings))


def test_keys_written_before_are_not_sent_again(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    verdicts = [verdict(n) for n in range(5)]

    async def run() -> tuple[int, int]:
        target_sink = sink(authority, service, target)
        try:
            return await target_sink.write_verdicts(verdicts), await target_sink.write_verdicts(
                [*verdicts, verdict(5)]
            )
        finally:
            await target_sink.close()

    assert asyncio.run(run()) == (5, 1)
    assert len(service.rows(VERDICT_TABLE)) == 6
    assert len(service.requests) == 2


def test_a_large_batch_goes_out_in_requests_under_the_limit(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    findings = inspected_findings() * 8
    verdicts = [verdict(n, findings=findings) for n in range(1500)]
    size = loganalytics.body_size([loganalytics.verdict_row(v, "prod") for v in verdicts])
    assert size > 2 * service.max_body_bytes  # what one request could not carry
    assert write(sink(authority, service, target), verdicts) == 1500
    assert len(service.rows(VERDICT_TABLE)) == 1500
    statuses = [status for status, _ in service.requests]
    assert set(statuses) == {204}
    assert len(statuses) >= size // loganalytics.MAX_BODY_BYTES + 1


def test_a_413_splits_the_request_until_it_fits(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    service.max_body_bytes = 20_000  # the service's limit, lower than the sink assumes
    findings = inspected_findings()
    verdicts = [verdict(n, findings=findings) for n in range(120)]
    assert write(sink(authority, service, target), verdicts) == 120
    rows = service.rows(VERDICT_TABLE)
    assert sorted(row["VerdictKey"] for row in rows) == sorted(v.key for v in verdicts)
    statuses = [status for status, _ in service.requests]
    assert 413 in statuses
    assert statuses[-1] == 204


def test_a_single_row_over_the_limit_is_a_clear_error(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    # Findings always fit a field; a row can still outgrow a request by its other fields.
    huge = dataclasses.replace(verdict(1), resource="chats('19:x')/messages('" + "9" * 10**6)
    with pytest.raises(LogsIngestionRefused, match=f"verdict {huge.key} is .* over the"):
        write(sink(authority, service, target), [huge])
    assert service.requests == []


def test_throttling_waits_as_long_as_retry_after_says(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    service.throttle(2, retry_after=0.3)
    # Backoff alone would wait a few milliseconds: only Retry-After makes it 0.6 s.
    target_sink = sink(authority, service, target, retry=RetryPolicy(4, 0.001, 0.002))
    started = time.monotonic()
    assert write(target_sink, [verdict(1)]) == 1
    assert time.monotonic() - started >= 0.6
    assert [status for status, _ in service.requests] == [429, 429, 204]
    assert target_sink.failed_attempts == 2


def test_the_rules_request_rate_is_a_429_with_retry_after(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    service.requests_per_minute = 2
    target_sink = sink(authority, service, target, max_retry_after=0.05)
    for n in range(2):
        assert write(sink(authority, service, target), [verdict(n)]) == 1
    with pytest.raises(LogsIngestionUnavailable, match="429 TooManyRequests"):
        write(target_sink, [verdict(9)])
    assert all(status == 429 for status, _ in service.requests[2:])


def test_server_errors_are_retried_and_a_spent_retry_holds_the_batch(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    service.fail(2, status=503)
    assert write(sink(authority, service, target), [verdict(1)]) == 1
    service.fail(3, status=500)
    with pytest.raises(LogsIngestionUnavailable, match="after 3 attempts: 500"):
        write(sink(authority, service, target), [verdict(2)])
    assert [row["MessageId"] for row in service.rows(VERDICT_TABLE)] == ["m1"]
    # The batch comes again once the service is back, and only then is it durable.
    assert write(sink(authority, service, target), [verdict(2)]) == 1
    assert [row["MessageId"] for row in service.rows(VERDICT_TABLE)] == ["m1", "m2"]


def test_a_batch_that_comes_again_sends_only_what_was_not_accepted(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    findings = inspected_findings()
    verdicts = [verdict(n, findings=findings) for n in range(60)]
    service.fail(3, status=502, after=1)  # the first request lands, the second never does

    async def run() -> None:
        target_sink = sink(authority, service, target, max_body_bytes=20_000)
        try:
            with pytest.raises(LogsIngestionUnavailable):
                await target_sink.write_verdicts(verdicts)
            landed = len(service.rows(VERDICT_TABLE))
            assert 0 < landed < 60
            assert await target_sink.write_verdicts(verdicts) == 60 - landed
        finally:
            await target_sink.close()

    asyncio.run(run())
    keys = [row["VerdictKey"] for row in service.rows(VERDICT_TABLE)]
    assert sorted(keys) == sorted(v.key for v in verdicts)  # each once: nothing resent


def test_a_row_outside_the_streams_schema_is_refused_with_the_services_error(
    authority: Authority,
    service: FakeLogsIngestion,
    target: LogsIngestionTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = loganalytics.verdict_row

    def drifted(v: Verdict, environment: str) -> dict[str, Any]:
        return {**original(v, environment), "Body": "the message text"}

    monkeypatch.setattr(loganalytics, "verdict_row", drifted)
    with pytest.raises(LogsIngestionRefused, match=r"400 InvalidStreamData: .*'Body'"):
        write(sink(authority, service, target), [verdict(1)])
    assert service.rows(VERDICT_TABLE) == []


def test_the_real_client_meets_the_schema_check_too(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    async def upload(record: dict[str, Any]) -> None:
        client = LogsIngestionClient(
            target.endpoint, authority.credential(RUNTIME), transport=service.transport()
        )
        async with client:
            await client.upload(target.rule_id, target.stream, [record])

    with pytest.raises(HttpResponseError) as refused:
        asyncio.run(upload({"VerdictKey": "k", "FindingTotal": "three"}))
    assert refused.value.status_code == 400
    assert json.loads(refused.value.response.text())["error"]["code"] == "InvalidStreamData"
    asyncio.run(upload({"VerdictKey": "k", "FindingTotal": 3}))
    assert service.rows(VERDICT_TABLE) == [{"VerdictKey": "k", "FindingTotal": 3}]


def test_without_the_publisher_role_the_service_says_so(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    with pytest.raises(LogsIngestionRefused) as refused:
        write(sink(authority, service, target, principal=DEPLOYER), [verdict(1)])
    message = str(refused.value)
    assert "403 OperationFailed" in message
    assert "does not have access to ingest data for the data collection rule" in message
    (denial,) = authority.denied
    assert denial.principal == DEPLOYER
    assert denial.needs == "Microsoft.Insights/Telemetry/Write"
    assert denial.resource.endswith("/dataCollectionRules/dcr-gtap-prod-weu")
    assert service.rows(VERDICT_TABLE) == []


def test_the_grant_is_on_the_rule_and_nothing_else_covers_it(estate: Estate) -> None:
    (publisher,) = [g for g in estate.grants if g.role == "Monitoring Metrics Publisher"]
    assert publisher.principal == RUNTIME
    assert publisher.scope.endswith(RULE_ID_TAIL)
    reduced = estate.without(publisher.key)
    authority = Authority(reduced)
    service = FakeLogsIngestion.from_estate(reduced, authority)
    outputs = reduced.outputs()
    target = LogsIngestionTarget(outputs["logs_ingestion_endpoint"], outputs["logs_dcr_id"], "prod")
    with pytest.raises(LogsIngestionRefused, match="403 OperationFailed"):
        write(sink(authority, service, target), [verdict(1)])
    assert [d.principal for d in authority.denied] == [RUNTIME]


def test_a_token_for_another_clouds_audience_is_refused(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget
) -> None:
    us = LogsIngestionTarget(
        target.endpoint, target.rule_id, "prod", audience="https://monitor.azure.us"
    )
    with pytest.raises(LogsIngestionRefused, match="401 InvalidToken: token audience"):
        write(sink(authority, service, us), [verdict(1)])


def test_a_gzipped_body_over_the_limit_uncompressed_is_a_413(
    service: FakeLogsIngestion, target: LogsIngestionTarget, authority: Authority
) -> None:
    from azure.core.rest import HttpRequest

    service.max_body_bytes = 1000
    body = gzip.compress(json.dumps([{"VerdictKey": "x" * 2000}]).encode())
    assert len(body) < 1000
    request = HttpRequest(
        "POST",
        f"{target.endpoint}/dataCollectionRules/{target.rule_id}/streams/{target.stream}"
        "?api-version=2023-01-01",
        headers={
            "Authorization": "Bearer "
            + authority.issue(RUNTIME, "https://monitor.azure.com/.default"),
            "Content-Encoding": "gzip",
        },
        content=body,
    )
    status, answer, _ = service.handle(request)
    assert status == 413
    assert answer["error"]["code"] == "ContentLengthLimitExceeded"


def test_both_destinations_get_each_verdict_once_and_durable_only_when_both_accept(
    authority: Authority, service: FakeLogsIngestion, target: LogsIngestionTarget, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "verdicts.sqlite")
    verdicts = [verdict(n) for n in range(4)]

    async def run() -> None:
        fanout = FanOutVerdicts([BlockingVerdicts(store), sink(authority, service, target)])
        try:
            service.fail(3)
            with pytest.raises(LogsIngestionUnavailable):
                await fanout.write_verdicts(verdicts)
            # The batch comes again: the store already has it, Log Analytics now takes it.
            assert await fanout.write_verdicts(verdicts) == 4
            assert await fanout.write_verdicts(verdicts) == 0
        finally:
            await fanout.close()

    asyncio.run(run())
    assert [row["MessageId"] for row in service.rows(VERDICT_TABLE)] == [
        v.message_id for v in verdicts
    ]
    reopened = SqliteStore(tmp_path / "verdicts.sqlite")
    try:
        assert reopened.write_verdicts(verdicts) == 0  # every key already stored, once
    finally:
        reopened.close()


def test_a_target_names_its_problem() -> None:
    with pytest.raises(ValueError, match="not an https URL"):
        LogsIngestionTarget("http://dce.example", "dcr-1", "prod")
    with pytest.raises(ValueError, match="immutable id is required"):
        LogsIngestionTarget("https://dce.example", "", "prod")
    with pytest.raises(ValueError, match="not a custom stream"):
        LogsIngestionTarget("https://dce.example", "dcr-1", "prod", stream="Verdicts")
