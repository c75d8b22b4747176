"""A fake Azure Monitor Logs Ingestion API at the azure-core transport.

It answers the real `azure.monitor.ingestion` clients: `POST {endpoint}/dataCollectionRules/
{immutable id}/streams/{stream}?api-version=...` with a (gzipped) JSON array, 204 when
accepted. Rules, their streams, the tables they feed and their endpoints come from the
synthesized stack (`from_estate`), and the rules Azure applies are enforced:

- the caller needs `Microsoft.Insights/Telemetry/Write` on the rule (Monitoring Metrics
  Publisher), with a token for the cloud's monitor audience; a denial is the 403
  `OperationFailed` body the service sends, a missing or wrong token a 401;
- a rule bound to an endpoint is called on that endpoint only;
- a body over the 1 MB limit (compressed or not) is a 413;
- each rule takes at most `requests_per_minute` requests a minute (429 + `Retry-After`),
  and `throttle`/`fail` script 429s and 5xx for the next requests;
- records must be objects of the stream's declared columns and types; values over 64 KB
  are truncated as the service does. Azure itself accepts a mismatched record (204) and
  drops what does not fit, reporting it only in the rule's error logs; the fake refuses it
  (400 `InvalidStreamData`) so a drifting schema fails a test instead of losing rows.

Accepted rows land in the rule's output table (`rows(table)`).
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.rest import HttpRequest

from tests.fakes.authorization import Authority, Estate
from tests.fakes.azure_transport import FakeAsyncTransport

TELEMETRY_WRITE = "Microsoft.Insights/Telemetry/Write"
MONITOR_AUDIENCE = "https://monitor.azure.com"
MAX_BODY_BYTES = 1_048_576  # "1 MB" per call, compressed and uncompressed
MAX_FIELD_BYTES = 64 * 1024  # longer values are truncated
REQUESTS_PER_MINUTE = 12_000  # per rule
PATH = re.compile(r"/dataCollectionRules/([^/]+)/streams/([^/]+)")


@dataclass(frozen=True)
class Rule:
    """One data collection rule as deployed: where it listens and what its streams hold."""

    immutable_id: str
    resource_id: str  # ARM id: the scope of its role assignments
    endpoint_host: str | None  # its data collection endpoint's host, if bound to one
    streams: Mapping[str, Mapping[str, str]]  # stream -> column -> type
    outputs: Mapping[str, str]  # stream -> table


class SchemaError(ValueError):
    """A deployment Azure would refuse: the rule and its table disagree."""


@dataclass
class FakeLogsIngestion:
    rules: dict[str, Rule] = field(default_factory=dict)  # by immutable id
    authority: Authority | None = None
    audience: str = MONITOR_AUDIENCE
    max_body_bytes: int = MAX_BODY_BYTES
    requests_per_minute: int = REQUESTS_PER_MINUTE
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: (status, path) of every request, in order.
    requests: list[tuple[int, str]] = field(default_factory=list)
    #: What the next requests meet: (status, Retry-After), or None to be answered as usual.
    _scripted: collections.deque[tuple[int, float | None] | None] = field(
        default_factory=collections.deque
    )
    _recent: dict[str, collections.deque[float]] = field(default_factory=dict)

    @classmethod
    def from_estate(cls, estate: Estate, authority: Authority | None = None) -> FakeLogsIngestion:
        """The stack's rules, endpoints and tables, checked as Azure checks them at deploy."""
        tables = {
            body["name"]: {c["name"]: c["type"] for c in body["column"]}
            for body in estate.resources(
                "azurerm_log_analytics_workspace_table_custom_log"
            ).values()
        }
        endpoints = {
            estate.resource_id("azurerm_monitor_data_collection_endpoint", name): urlsplit(
                estate.resolve(
                    f"${{azurerm_monitor_data_collection_endpoint.{name}.logs_ingestion_endpoint}}"
                )
            ).hostname
            for name in estate.resources("azurerm_monitor_data_collection_endpoint")
        }
        fake = cls(authority=authority, tables={name: [] for name in tables})
        for name, body in estate.resources("azurerm_monitor_data_collection_rule").items():
            streams = {
                s["stream_name"]: {c["name"]: c["type"] for c in s["column"]}
                for s in body.get("stream_declaration", [])
            }
            outputs: dict[str, str] = {}
            for flow in body["data_flow"]:
                table = flow["output_stream"].removeprefix("Custom-")
                if table not in tables:
                    raise SchemaError(f"{name}: output table {table} does not exist")
                for stream in flow["streams"]:
                    _check_output(name, stream, streams.get(stream), table, tables[table])
                    outputs[stream] = table
            immutable_id = estate.resolve(
                f"${{azurerm_monitor_data_collection_rule.{name}.immutable_id}}"
            )
            fake.rules[immutable_id] = Rule(
                immutable_id,
                estate.resource_id("azurerm_monitor_data_collection_rule", name),
                endpoints.get(body.get("data_collection_endpoint_id", "")),
                streams,
                outputs,
            )
        return fake

    def transport(self) -> FakeAsyncTransport:
        return FakeAsyncTransport(self.handle)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables[table]

    def throttle(self, times: int = 1, *, retry_after: float = 1.0) -> None:
        """Answer the next `times` requests 429 with `Retry-After`."""
        self._scripted.extend([(429, retry_after)] * times)

    def fail(self, times: int = 1, *, status: int = 503, after: int = 0) -> None:
        """Answer `times` requests with `status` (a 5xx) and no Retry-After, once `after`
        more requests were answered as usual."""
        self._scripted.extend([None] * after + [(status, None)] * times)

    # -- the service ----------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        status, body, headers = self._answer(request)
        self.requests.append((status, urlsplit(request.url).path))
        return status, body, headers

    def _answer(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        url = urlsplit(request.url)
        match = PATH.fullmatch(url.path)
        if request.method != "POST" or match is None:
            return 404, _error("NotFound", f"{request.method} {url.path}"), {}
        if not parse_qs(url.query).get("api-version"):
            return 400, _error("MissingApiVersionParameter", "api-version is required"), {}
        rule_id, stream = match.groups()
        token = request.headers.get("Authorization")
        if (unauthenticated := self._authenticate(token)) is not None:
            return unauthenticated
        rule = self.rules.get(rule_id)
        if rule is None:
            return 404, _error("NotFound", f"data collection rule {rule_id} not found"), {}
        if (denied := self._authorize(request, token, rule, url.hostname, stream)) is not None:
            return denied
        if self._scripted and (scripted := self._scripted.popleft()) is not None:
            status, retry_after = scripted
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return status, _error(_code(status), "scripted failure"), headers
        if (throttled := self._rate(rule)) is not None:
            return throttled
        raw = _content(request)
        if len(raw) > self.max_body_bytes:
            return 413, _error("ContentLengthLimitExceeded", "request body over 1 MB"), {}
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return 400, _error("InvalidContentEncoding", "body is not gzip"), {}
            if len(raw) > self.max_body_bytes:
                return 413, _error("ContentLengthLimitExceeded", "uncompressed body over 1 MB"), {}
        columns = rule.streams.get(stream)
        if columns is None or stream not in rule.outputs:
            return 400, _error("InvalidStream", f"stream {stream} is not declared in the rule"), {}
        try:
            records = json.loads(raw)
        except ValueError:
            return 400, _error("InvalidJson", "body is not JSON"), {}
        if not isinstance(records, list):
            return 400, _error("InvalidJson", "body must be a JSON array of records"), {}
        rows = []
        for index, record in enumerate(records):
            problem = _schema_problem(record, columns)
            if problem is not None:
                return 400, _error("InvalidStreamData", f"record {index}: {problem}"), {}
            rows.append({name: _truncated(value) for name, value in record.items()})
        self.tables.setdefault(rule.outputs[stream], []).extend(rows)
        return 204, b"", {}

    def _authenticate(self, token: str | None) -> tuple[int, Any, dict[str, str]] | None:
        if self.authority is None:
            return None if token else (401, _error("InvalidToken", "no token"), {})
        caller = self.authority.caller(token)
        if caller is None:
            return 401, _error("InvalidToken", "The provided token is missing or invalid"), {}
        if caller[1].get("aud") != self.audience:
            return 401, _error("InvalidToken", f"token audience must be {self.audience}"), {}
        return None

    def _authorize(
        self, request: HttpRequest, token: str | None, rule: Rule, host: str | None, stream: str
    ) -> tuple[int, Any, dict[str, str]] | None:
        bound = rule.endpoint_host is None or rule.endpoint_host == host
        denial = None
        if self.authority is not None:
            denial = self.authority.check(
                token,
                service="Logs Ingestion",
                call=f"POST /dataCollectionRules/{rule.immutable_id}/streams/{stream}",
                resource=rule.resource_id,
                data_action=TELEMETRY_WRITE,
            )
        if denial is None and bound:
            return None
        principal = denial.principal if denial is not None else "caller"
        message = (
            "The authentication token provided does not have access to ingest data for the "
            f"data collection rule with immutable Id '{rule.immutable_id}' PipelineAccessResult: "
            f"AccessGranted: False, IsRbacPresent: {denial is None}, IsDcrDceBindingValid: "
            f"{bound}, DcrArmId: {rule.resource_id}, Message: Required authorization action was "
            f"not found for tenantId {self._tenant()} objectId {principal} on resourceId "
            f"{rule.resource_id} ConfigurationId: {rule.immutable_id}.."
        )
        return 403, {"error": {"code": "OperationFailed", "message": message}}, {}

    def _tenant(self) -> str:
        return self.authority.estate.tenant_id if self.authority is not None else ""

    def _rate(self, rule: Rule) -> tuple[int, Any, dict[str, str]] | None:
        now = time.monotonic()
        recent = self._recent.setdefault(rule.immutable_id, collections.deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= self.requests_per_minute:
            wait = max(1, int(recent[0] + 60 - now) + 1)
            return 429, _error("TooManyRequests", "rule request limit"), {"Retry-After": str(wait)}
        recent.append(now)
        return None


def _check_output(
    rule: str,
    stream: str,
    declared: Mapping[str, str] | None,
    table: str,
    columns: Mapping[str, str],
) -> None:
    """A `source` transformation passes rows unchanged: every column must exist in the
    table with the same type, and the table needs TimeGenerated."""
    if declared is None:
        raise SchemaError(f"{rule}: data flow reads undeclared stream {stream}")
    if columns.get("TimeGenerated") != "datetime":
        raise SchemaError(f"{table}: a custom table needs a TimeGenerated datetime column")
    for name, kind in declared.items():
        if columns.get(name) != kind:
            raise SchemaError(
                f"{rule}: {stream}.{name} ({kind}) is {columns.get(name) or 'missing'} in {table}"
            )


def _content(request: HttpRequest) -> bytes:
    body = request.content
    if isinstance(body, str):
        return body.encode()
    return bytes(body or b"")


def _schema_problem(record: Any, columns: Mapping[str, str]) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, value in record.items():
        kind = columns.get(name)
        if kind is None:
            return f"column {name!r} is not in the stream"
        if value is not None and not _fits(kind, value):
            return f"column {name!r} is {kind}, got {type(value).__name__} {value!r:.60}"
    return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "datetime":
        if not isinstance(value, str):
            return False
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return kind == "dynamic"


def _truncated(value: Any) -> Any:
    """A value over the field limit, cut as the service cuts it: a `dynamic` value (a list or
    an object) is stored as its JSON text, cut too, and no longer parses."""
    if isinstance(value, list | dict):
        text = json.dumps(value)
        if len(text.encode()) > MAX_FIELD_BYTES:
            return text.encode()[:MAX_FIELD_BYTES].decode(errors="ignore")
    if isinstance(value, str) and len(value.encode()) > MAX_FIELD_BYTES:
        return value.encode()[:MAX_FIELD_BYTES].decode(errors="ignore")
    return value


def _code(status: int) -> str:
    return {429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}.get(
        status, "ServerError"
    )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
