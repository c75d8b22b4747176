"""`graphtap deadletters replay --reason fetch_failed`: Outlook messages Graph would not serve
are read again, once it does, through the runtime's Graph client; never without one."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from graphtap.hosts import azure
from graphtap.hosts.cli import cli
from graphtap.hosts.commands import deadletters
from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.notifications.outlook import mail_change_item, mail_resource
from graphtap.processing import compose
from graphtap.processing.fetch import ContentFetcher, FetchRetry
from graphtap.processing.fetch.mail import GraphMailReader, MailboxLimiter, MailboxLimits
from graphtap.processing.pipeline import Pipeline
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.graph import build_client
from tests.fakes.graph import FakeGraph
from tests.subscriptions.conftest import FakeCredential

STATE = "mail-replay-client-state-0123456789"
HASH_KEY = "6c" * 32
TENANT = "6f1d4a7e-1111-4222-8333-944455556666"
USER = "0b4c1f1e-aaaa-4bbb-8ccc-dddddddddddd"


def _notification(message_id: str, etag: str) -> bytes:
    item = mail_change_item(
        subscription_id="sub-mail",
        change_type="created",
        tenant_id=TENANT,
        client_state=STATE,
        resource=mail_resource(USER, TENANT, message_id),
        message_id=message_id,
        etag=etag,
    )
    return orjson.dumps({"value": [item]})


def _replay(cli_keys: Path, tmp_path: Path, *more: str) -> Any:
    return CliRunner().invoke(
        cli,
        [
            "deadletters",
            "replay",
            "--store",
            f"sqlite:{tmp_path / 'store.sqlite'}",
            "--reason",
            "fetch_failed",
            "--keys",
            str(cli_keys),
            "--sink",
            f"sqlite:{tmp_path / 'store.sqlite'}",
            "--hash-key-file",
            str(tmp_path / "hash.key"),
            *more,
        ],
        env={"GRAPHTAP_CLIENT_STATES": STATE, "GRAPHTAP_GRAPH_ENDPOINT": None},
    )


def test_fetch_failed_letters_are_not_replayed_without_graph(
    cli_keys: Path, tmp_path: Path
) -> None:
    (tmp_path / "hash.key").write_text(HASH_KEY)
    result = _replay(cli_keys, tmp_path)
    assert result.exit_code == 2
    assert "--graph-endpoint" in result.output


def test_a_message_graph_failed_to_serve_is_read_again_and_gets_its_verdict(
    cli_keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hash.key").write_text(HASH_KEY)
    graph = FakeGraph(VirtualClock(), tenant_id=TENANT)
    stored = graph.mailboxes.deliver(
        USER,
        {"subject": "card", "body": {"contentType": "text", "content": "4111 1111 1111 1111"}},
    )
    graph.mailboxes.fail(503)  # Outlook is down for as long as the processor tries
    settings = compose.pipeline_settings(
        key_paths=(cli_keys,), client_states=(STATE,), hash_key=bytes.fromhex(HASH_KEY)
    )
    event = SourceEvent("0", 4, _notification(stored.id, stored.etag))
    once = MailboxLimiter(MailboxLimits(attempts=1))  # no waiting out the 503s here
    reader = GraphMailReader(build_client(FakeCredential(), transport=graph), once)
    fetcher = ContentFetcher(
        ClientStateCheck([STATE]), mail=reader, retry=FetchRetry(attempts=1, initial_delay=0)
    )
    asyncio.run(fetcher.fill([event]))
    [letter] = Pipeline.from_settings(settings).process(event).dead_letters
    assert letter.reason == "fetch_failed"
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write_dead_letters([letter])
    store.close()

    graph.mailboxes.heal()
    opened: list[str] = []

    def open_mail(
        credential: Any, endpoint: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> GraphMailReader:
        opened.append(endpoint)
        return GraphMailReader(build_client(credential, endpoint=endpoint, transport=graph))

    monkeypatch.setattr(azure, "open_mail", open_mail)
    monkeypatch.setattr(deadletters, "_credential", FakeCredential)
    result = _replay(cli_keys, tmp_path, "--graph-endpoint", "https://graph.microsoft.com")
    assert result.exit_code == 0, result.output
    assert "1 new verdict(s), 1 letter(s) fixed" in result.output
    assert opened == ["https://graph.microsoft.com"]
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        [(content,)] = db.execute("SELECT content FROM verdicts").fetchall()
    assert content == "inspected"
