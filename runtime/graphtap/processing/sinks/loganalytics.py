"""Log Analytics as a verdict sink: one row per verdict through the Logs Ingestion API.

The stack declares the custom table `GraphtapVerdicts_CL` and the data collection rule's
stream `Custom-GraphtapVerdicts` from `VERDICT_COLUMNS`, so the rows this sink writes and
the schema Azure expects have one source. A row carries what `Verdict.to_dict()` carries:
ids, the verdict's severity and its findings as inspection left them (type, confidence,
severity, masked preview, keyed hashes), never a value or message content.

Rows go out in requests under the API's 1 MB body limit (measured as the client serializes
them); a 413 splits the request in two. A 429 or a 5xx is retried after the service's
`Retry-After` (else with backoff); when the retries are spent the write raises
`LogsIngestionUnavailable`, so the batch is not checkpointed and comes again. A request the
service refuses for good (403 without the role, 400 for rows outside the stream's schema)
raises `LogsIngestionRefused` with the service's code and message. The API takes no
idempotency key: a retried request can add rows twice, and the workspace function
`GraphtapVerdicts` (stacks/kql/verdicts.kql) collapses them by `VerdictKey`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.monitor.ingestion.aio import LogsIngestionClient

from graphtap.processing.sinks.eventhubs import RecentKeys, RetryPolicy, SinkUnavailable
from graphtap.processing.verdicts import Verdict

log = logging.getLogger(__name__)

ColumnType = Literal["string", "int", "long", "real", "boolean", "datetime", "dynamic"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str


VERDICT_TABLE = "GraphtapVerdicts_CL"
VERDICT_STREAM = "Custom-GraphtapVerdicts"

#: The table's and the stream's columns, in order. The stack declares both from this tuple.
VERDICT_COLUMNS: tuple[Column, ...] = (
    Column("TimeGenerated", "datetime", "When the verdict was processed"),
    Column("VerdictKey", "string", "Same for every replay of one change: deduplicate on it"),
    # `TenantId` is reserved in every Log Analytics table (the workspace's id).
    Column("AadTenantId", "string", "Entra tenant of the message"),
    Column("SubscriptionId", "string", "Graph subscription that notified"),
    Column("ChangeType", "string", "created, updated or deleted"),
    Column("Resource", "string", "Graph resource path of the message"),
    Column("MessageId", "string", "Message id"),
    Column("ConversationId", "string", "Chat, or team/channel"),
    Column("SenderId", "string", "Entra object id of the sender"),
    Column("Content", "string", "inspected, deleted or not_included (never the content)"),
    Column("Severity", "string", "none, low, medium, high or critical"),
    Column("FindingTotal", "int", "Every finding of the message, listed or not"),
    Column("FindingsTruncated", "boolean", "Findings or positions left out of Findings"),
    Column("Findings", "dynamic", "Type, confidence, severity, masked preview and hashes"),
    Column("CertificateId", "string", "Encryption certificate the content was decrypted with"),
    Column("Partition", "string", "Notifications hub partition"),
    Column("Offset", "string", "Position in that partition"),
    Column("Environment", "string", "graphtap environment that processed it"),
    Column("Action", "dynamic", "What the enforcement policy did or would do, and its rule"),
)

#: The API's limit on one request's body ("1 MB", compressed and uncompressed): kept under
#: whichever way the megabyte is read.
MAX_BODY_BYTES = 1_000_000
DEFAULT_RETRY = RetryPolicy()
#: Statuses worth another attempt: timeouts, throttling and the service's own failures.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
#: The API's limit on one field's value ("64 KB"; longer values are cut, which would leave
#: the `Findings` JSON unreadable): kept under whichever way the kilobyte is read.
MAX_FIELD_BYTES = 64_000


def verdict_row(verdict: Verdict, environment: str) -> dict[str, Any]:
    """The table row of one verdict, keyed by `VERDICT_COLUMNS`."""
    processed = dt.datetime.fromtimestamp(verdict.processed_at, dt.UTC)
    findings, cut = fitted_findings(verdict.findings)
    return {
        "TimeGenerated": processed.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "VerdictKey": verdict.key,
        "AadTenantId": verdict.tenant_id,
        "SubscriptionId": verdict.subscription_id,
        "ChangeType": verdict.change_type,
        "Resource": verdict.resource,
        "MessageId": verdict.message_id,
        "ConversationId": verdict.conversation_id,
        "SenderId": verdict.sender_id,
        "Content": verdict.content,
        "Severity": verdict.severity,
        "FindingTotal": verdict.finding_total,
        "FindingsTruncated": verdict.findings_truncated or cut,
        "Findings": findings,
        "CertificateId": verdict.certificate_id,
        "Partition": verdict.partition,
        "Offset": str(verdict.offset),
        "Environment": environment,
        "Action": verdict.action.to_dict() if verdict.action is not None else None,
    }


def fitted_findings(findings: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """`findings` within `MAX_FIELD_BYTES` as the row sends them, and whether any part was
    left out: the positions (a hundred findings without them are a third of the limit),
    then, should that not do, findings from the end of the list. `FindingTotal` still counts
    every finding, and the other sinks keep them all."""
    listed = list(findings)
    if _json_bytes(listed) <= MAX_FIELD_BYTES:
        return listed, False
    listed = [{k: v for k, v in f.items() if k != "positions"} for f in listed]
    size = 2  # the brackets, then each finding and the ", " before all but the first
    for count, finding in enumerate(listed):
        size += _json_bytes(finding) + (2 if count else 0)
        if size > MAX_FIELD_BYTES:
            return listed[:count], True
    return listed, True


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value).encode())


def body_size(rows: Sequence[dict[str, Any]]) -> int:
    """The bytes of `rows` as the client sends them: `json.dumps(rows)` before gzip."""
    if not rows:
        return 2
    return 2 + sum(len(json.dumps(row).encode()) for row in rows) + 2 * (len(rows) - 1)


def requests_of(rows: Sequence[dict[str, Any]], limit: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in order, in as few requests as fit `limit` bytes each."""
    request: list[dict[str, Any]] = []
    size = 2
    for row in rows:
        row_size = len(json.dumps(row).encode())
        if 2 + row_size > limit:
            raise LogsIngestionRefused(
                f"verdict {row['VerdictKey']} is {row_size} bytes as a row, over the "
                f"{limit}-byte request limit"
            )
        added = row_size + (2 if request else 0)
        if request and size + added > limit:
            yield request
            request, size, added = [], 2, row_size
        request.append(row)
        size += added
    if request:
        yield request


class LogsIngestionUnavailable(SinkUnavailable):
    """The Logs Ingestion API failed every attempt; the batch must not be checkpointed."""


class LogsIngestionRefused(SinkUnavailable):
    """The Logs Ingestion API refused the rows for good (no role, not the stream's schema)."""


@dataclass(frozen=True)
class LogsIngestionTarget:
    """Where rows go: the data collection endpoint, the rule's immutable id and its stream."""

    endpoint: str
    rule_id: str
    environment: str
    stream: str = VERDICT_STREAM
    #: Whom tokens are requested for: the cloud's (`graphtap.clouds.Cloud.monitor_audience`).
    audience: str = "https://monitor.azure.com"

    def __post_init__(self) -> None:
        if not self.endpoint.startswith("https://"):
            raise ValueError(f"logs ingestion endpoint {self.endpoint!r} is not an https URL")
        if not self.rule_id:
            raise ValueError("the data collection rule's immutable id is required")
        if not self.stream.startswith("Custom-"):
            raise ValueError(f"stream {self.stream!r} is not a custom stream (Custom-...)")


class LogAnalyticsVerdictSink:
    """Verdicts as rows of the environment's verdict table, durable once the API accepted
    every request (204). Keys this process already wrote are not sent again."""

    def __init__(
        self,
        target: LogsIngestionTarget,
        *,
        credential: AsyncTokenCredential,
        retry: RetryPolicy = DEFAULT_RETRY,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_retry_after: float = 120.0,
        recent_keys: int = 100_000,
        **client_options: Any,
    ) -> None:
        self.target = target
        # The sink retries itself, so it can honour Retry-After and give up with a clear error.
        self._client = LogsIngestionClient(
            target.endpoint,
            credential,
            credential_scopes=[f"{target.audience.rstrip('/')}/.default"],
            retry_total=0,
            **client_options,
        )
        self._retry = retry
        self._limit = max_body_bytes
        self._max_retry_after = max_retry_after
        self._recent = RecentKeys(recent_keys)
        self.requests = 0
        self.failed_attempts = 0

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        """Write verdicts not written before by this process; return how many were written."""
        fresh = {v.key: v for v in verdicts if v.key not in self._recent}
        if not fresh:
            return 0
        rows = [verdict_row(v, self.target.environment) for v in fresh.values()]
        for request in requests_of(rows, self._limit):
            await self._upload(request)
        return len(fresh)

    async def _upload(self, rows: list[dict[str, Any]]) -> None:
        """One request's rows, until accepted: split on 413, wait and retry on 429 and 5xx."""
        for attempt in range(1, self._retry.attempts + 1):
            try:
                self.requests += 1
                logs: list[MutableMapping[str, Any]] = list(rows)
                await self._client.upload(self.target.rule_id, self.target.stream, logs)
                # Accepted: a batch that comes again (another request failed) skips these.
                for row in rows:
                    self._recent.add(row["VerdictKey"])
                return
            except HttpResponseError as error:
                status = error.status_code or 0
                if status == 413 and len(rows) > 1:
                    half = len(rows) // 2
                    await self._upload(rows[:half])
                    await self._upload(rows[half:])
                    return
                if status not in RETRYABLE:
                    raise LogsIngestionRefused(
                        f"Log Analytics refused {len(rows)} verdict row(s) for "
                        f"{self.target.stream}: {status} {_service_error(error)}"
                    ) from error
                delay = self._retry_after(error) or self._retry.delay(attempt)
                reason = f"{status} {_service_error(error)}"
            except (ServiceRequestError, ServiceResponseError) as error:
                delay, reason = self._retry.delay(attempt), type(error).__name__
            self.failed_attempts += 1
            if attempt == self._retry.attempts:
                raise LogsIngestionUnavailable(
                    f"Log Analytics did not accept {len(rows)} verdict row(s) after {attempt} "
                    f"attempts: {reason}"
                )
            log.warning(
                "logs ingestion failed; retrying",
                extra={"attempt": attempt, "delay": round(delay, 3), "error": reason},
            )
            await asyncio.sleep(delay)

    def _retry_after(self, error: HttpResponseError) -> float | None:
        """The service's `Retry-After` (seconds or an HTTP date), capped; None without one."""
        headers = getattr(error.response, "headers", None) or {}
        value = headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
        return min(max(seconds, 0.0), self._max_retry_after)

    async def close(self) -> None:
        await self._client.close()


def _service_error(error: HttpResponseError) -> str:
    """The service's error code and message, from its JSON body when it sent one."""
    response = error.response
    try:
        body = json.loads(response.text()) if response is not None else None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = body["error"]
        return f"{detail.get('code', '')}: {detail.get('message', '')}".strip(": ")
    return error.reason or type(error).__name__
