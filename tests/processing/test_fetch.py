"""Content a notification points at (a large payload, an Outlook message) is read before the
pipeline, and the pipeline treats it as if Graph had sent it; what cannot be read is a named
dead letter, never a lost item."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from graphtap.notifications.authenticity import ClientStateCheck
from graphtap.notifications.crypto import encrypt_content
from graphtap.notifications.outlook import mail_change_item
from graphtap.processing.fetch import ContentFetcher, FetchError, FetchRetry
from graphtap.processing.fetch.payloads import LocalPayloadStore, open_payload_store
from graphtap.processing.pipeline import Pipeline
from graphtap.processing.sources import SourceEvent
from graphtap.processing.verdicts import GONE, INSPECTED
from graphtap.subscriptions.certificates import CertificateFiles, load_certificate

from .conftest import CLIENT_STATE, Scenario

QUICK = FetchRetry(attempts=2, initial_delay=0.001, max_delay=0.001)
TENANT = "6f1d4a7e-1111-4222-8333-944455556666"
USER = "0b4c1f1e-aaaa-4bbb-8ccc-dddddddddddd"
CARD = "4111 1111 1111 1111"


def _large(item: dict[str, Any], storage_id: str) -> dict[str, Any]:
    """The item as Graph sends it when its payload is over 1 MB, and the blob it wrote."""
    payload = {k: item.pop(k) for k in ("resource", "resourceData", "encryptedContent")}
    item["additionalPayloadStorageId"] = storage_id
    return payload


def _fill(fetcher: ContentFetcher, *events: SourceEvent) -> None:
    asyncio.run(fetcher.fill(events))


def test_a_payload_from_the_store_gets_the_verdict_the_inline_one_gets(
    pipeline: Pipeline, scenario: Scenario, tmp_path: Path
) -> None:
    message = scenario.tenant.post(sensitive=False)
    message.html = f"<p>card {CARD} exp 12/29</p>"
    inline = scenario.emitter.change(message, "created")
    expected = pipeline.process(scenario.event(scenario.body(inline))).verdicts
    large = orjson.loads(orjson.dumps(inline))
    (tmp_path / "blob-1").write_bytes(orjson.dumps(_large(large, "blob-1")))
    event = scenario.event(scenario.body(large))
    _fill(
        ContentFetcher(ClientStateCheck([CLIENT_STATE]), payloads=LocalPayloadStore(tmp_path)),
        event,
    )
    result = pipeline.process(event)
    assert result.dead_letters == []
    [verdict] = result.verdicts
    assert verdict.content == INSPECTED
    assert verdict.key == expected[0].key
    assert [f["type"] for f in verdict.findings] == [f["type"] for f in expected[0].findings]


@pytest.mark.parametrize(
    ("store", "problem"),
    [("empty", "no payload 'blob-2'"), ("none", "none is configured")],
)
def test_a_payload_missing_from_the_store_is_dead_lettered_as_unavailable(
    pipeline: Pipeline, scenario: Scenario, tmp_path: Path, store: str, problem: str
) -> None:
    good = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    bad = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    _large(bad, "blob-2")
    event = scenario.event(scenario.body(good, bad))
    payloads = LocalPayloadStore(tmp_path) if store == "empty" else None
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE]), payloads=payloads, retry=QUICK), event)
    result = pipeline.process(event)
    assert len(result.verdicts) == 1  # the neighbour is not held back
    [letter] = result.dead_letters
    assert letter.reason == "payload_unavailable"
    assert problem in letter.message


def test_a_payload_is_read_again_before_it_is_given_up(tmp_path: Path) -> None:
    reads: list[str] = []

    class Flaky:
        async def read(self, storage_id: str) -> bytes:
            reads.append(storage_id)
            if len(reads) < 3:
                raise FetchError("the store is busy")
            return b"{}"

        async def close(self) -> None:
            return None

    fetcher = ContentFetcher(
        ClientStateCheck([CLIENT_STATE]), payloads=Flaky(), retry=FetchRetry(3, 0.001, 0.001)
    )
    item = {
        "subscriptionId": "s",
        "changeType": "created",
        "tenantId": TENANT,
        "clientState": CLIENT_STATE,
        "additionalPayloadStorageId": "b",
    }
    event = SourceEvent("0", 0, orjson.dumps({"value": [item]}))
    _fill(fetcher, event)
    assert reads == ["b", "b", "b"]
    assert event.fetched is not None
    assert 0 in event.fetched


def test_a_forged_notification_makes_the_host_read_nothing(tmp_path: Path) -> None:
    class Spy(LocalPayloadStore):
        async def read(self, storage_id: str) -> bytes:
            raise AssertionError("a notification with a foreign clientState was fetched")

    item = {
        "subscriptionId": "s",
        "changeType": "created",
        "tenantId": TENANT,
        "clientState": "forged",
        "additionalPayloadStorageId": "b",
    }
    event = SourceEvent("0", 0, orjson.dumps({"value": [item]}))
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE]), payloads=Spy(tmp_path)), event)
    assert event.fetched is None


@pytest.mark.parametrize("storage_id", ["../secrets", "a/b", ".hidden", ""])
def test_a_local_store_refuses_ids_that_climb_out_of_its_folder(
    tmp_path: Path, storage_id: str
) -> None:
    with pytest.raises(FetchError, match="not a payload id"):
        asyncio.run(LocalPayloadStore(tmp_path).read(storage_id))


def test_a_payload_store_spec_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not local:DIR"):
        open_payload_store(f"blob:{tmp_path}")
    with pytest.raises(ValueError, match="is not a folder"):
        open_payload_store(f"local:{tmp_path / 'missing'}")


class Mailboxes:
    """Messages by (user, id), as the fetcher's reader sees them."""

    def __init__(self, messages: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        self.messages = messages
        self.reads: list[tuple[str, str]] = []

    async def read(self, user_id: str, message_id: str) -> dict[str, Any] | None:
        self.reads.append((user_id, message_id))
        if (user_id, message_id) not in self.messages:
            raise FetchError("status 503")
        return self.messages[(user_id, message_id)]

    async def close(self) -> None:
        return None


def _mail(
    message_id: str, change: str = "created", *, resource_user: str = f"{USER}@{TENANT}"
) -> dict[str, Any]:
    return mail_change_item(
        subscription_id="sub-mail",
        change_type=change,
        tenant_id=TENANT,
        client_state=CLIENT_STATE,
        resource=f"Users/{resource_user}/Messages/{message_id}",
        message_id=message_id,
        etag='W/"CQAAABYAAAD1"',
    )


def _message(message_id: str, body: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "subject": "quarterly numbers",
        "body": {"contentType": "html", "content": body},
        "from": {"emailAddress": {"address": "alice@contoso.example"}},
        "attachments": [{"name": "cards.xlsx"}],
    }


def test_mail_is_fetched_and_inspected(pipeline: Pipeline) -> None:
    reader = Mailboxes(
        {(USER, "m1"): _message("m1", f"<p>the card is {CARD} exp 12/29</p>"), (USER, "m2"): None}
    )
    fetcher = ContentFetcher(ClientStateCheck([CLIENT_STATE]), mail=reader, retry=QUICK)
    event = SourceEvent(
        "0",
        0,
        orjson.dumps({"value": [_mail("m1"), _mail("m2"), _mail("m3"), _mail("m4", "deleted")]}),
    )
    _fill(fetcher, event)
    assert (USER, "m4") not in reader.reads  # a deletion has nothing to read
    result = pipeline.process(event)
    by_id = {v.message_id: v for v in result.verdicts}
    assert by_id["m1"].content == INSPECTED
    assert "credit_card_number" in {f["type"] for f in by_id["m1"].findings}
    assert by_id["m2"].content == GONE
    assert by_id["m4"].content == "deleted"
    [letter] = result.dead_letters
    assert letter.reason == "fetch_failed"
    assert "status 503" in letter.message
    assert CARD not in letter.message


def test_mail_nothing_read_is_a_letter_not_a_verdict_until_replayed_with_a_reader(
    pipeline: Pipeline,
) -> None:
    """Without a Graph client (a local `process`), a mail change must not get a verdict that
    would stand for content never inspected: it waits as `fetch_failed` for a replay."""
    body = orjson.dumps({"value": [_mail("m1"), _mail("m2", "deleted")]})
    event = SourceEvent("0", 0, body)
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE])), event)
    result = pipeline.process(event)
    assert [v.content for v in result.verdicts] == ["deleted"]
    [letter] = result.dead_letters
    assert letter.reason == "fetch_failed"
    assert "--graph-endpoint" in letter.message
    reader = Mailboxes({(USER, "m1"): _message("m1", f"<p>{CARD} exp 12/29</p>")})
    again = SourceEvent("0", 0, body)
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE]), mail=reader), again)
    assert [v.content for v in pipeline.process(again).verdicts] == ["inspected", "deleted"]


def test_a_rich_mail_notification_is_read_too_its_selected_properties_have_no_body(
    pipeline: Pipeline, cert_a: CertificateFiles
) -> None:
    """A rich Outlook notification carries the `$select`ed properties, never the body: with
    nothing read it is a letter, not an `inspected` verdict; with a reader, the body read
    from Graph is what is inspected."""
    public = load_certificate(cert_a.certificate_path).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    item = _mail("m1")
    selected = {"id": "m1", "subject": "quarterly numbers", "isRead": False}
    item["encryptedContent"] = encrypt_content(
        orjson.dumps(selected), public, certificate_id=cert_a.certificate_id
    )
    body = orjson.dumps({"value": [item]})
    unread = SourceEvent("0", 0, body)
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE])), unread)
    result = pipeline.process(unread)
    assert result.verdicts == []
    assert [letter.reason for letter in result.dead_letters] == ["fetch_failed"]
    reader = Mailboxes({(USER, "m1"): _message("m1", f"<p>the card is {CARD} exp 12/29</p>")})
    read = SourceEvent("0", 0, body)
    _fill(ContentFetcher(ClientStateCheck([CLIENT_STATE]), mail=reader), read)
    [verdict] = pipeline.process(read).verdicts
    assert verdict.content == INSPECTED
    assert "credit_card_number" in {f["type"] for f in verdict.findings}


def test_one_version_of_a_message_has_one_key_however_it_was_notified(pipeline: Pipeline) -> None:
    """Graph notifies a new message as created and updated, with the mailbox written as
    user@tenant; resync names it by user id and knows no change type."""
    reader = Mailboxes({(USER, "m1"): _message("m1", "<p>hello</p>")})
    fetcher = ContentFetcher(ClientStateCheck([CLIENT_STATE]), mail=reader)
    forms = [_mail("m1"), _mail("m1", "updated"), _mail("m1", resource_user=USER.upper())]
    forms[2]["resource"] = f"users/{USER.upper()}/messages/m1"
    event = SourceEvent("0", 0, orjson.dumps({"value": forms}))
    _fill(fetcher, event)
    keys = {v.key for v in pipeline.process(event).verdicts}
    assert len(keys) == 1
