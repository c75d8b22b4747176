"""The fake Graph's Outlook mail, through the real msgraph-sdk client: delta per folder as
Graph pages and tokens it, and Mail.Read enforced. The mail resync is built on this."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.graph_service_client import GraphServiceClient

from graphtap.notifications.outlook import IMMUTABLE_IDS
from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.graph import build_client
from tests.fakes.graph import FakeGraph
from tests.subscriptions.conftest import FakeCredential

USER = "0b4c1f1e-aaaa-4bbb-8ccc-dddddddddddd"


def _client(graph: FakeGraph) -> GraphServiceClient:
    return build_client(FakeCredential(), transport=graph)


def _immutable_ids() -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration()
    config.headers.add("Prefer", IMMUTABLE_IDS)
    return config


async def _sync(
    client: GraphServiceClient,
    link: str | None = None,
    *,
    page: int = 2,
    folder: str = "inbox",
    immutable: bool = True,
) -> tuple[list[dict[str, Any]], str, int]:
    """Every page of one round: (items as id/@removed/subject, the deltaLink, pages).
    `immutable`: every request asks for immutable ids (the header holds for one request)."""
    delta = client.users.by_user_id(USER).mail_folders.by_mail_folder_id(folder).messages.delta
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["subject"])
    config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", f"odata.maxpagesize={page}")
    following = _immutable_ids() if immutable else None
    if immutable:
        config.headers.add("Prefer", IMMUTABLE_IDS)
    response = await (delta.with_url(link).get(following) if link else delta.get(config))
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert response is not None
        pages += 1
        for message in response.value or []:
            extra = message.additional_data or {}
            items.append({"id": message.id, "subject": message.subject, **extra})
        if response.odata_delta_link:
            return items, response.odata_delta_link, pages
        assert response.odata_next_link
        response = await delta.with_url(response.odata_next_link).get(following)


def test_delta_pages_a_folder_then_returns_what_changed_and_what_left() -> None:
    graph = FakeGraph(VirtualClock())
    boxes = graph.mailboxes
    ids = [boxes.deliver(USER, {"subject": f"m{n}"}).id for n in range(5)]
    boxes.deliver(USER, {"subject": "sent"}, folder="sentitems")
    archive = boxes.add_folder(USER, "Projects")
    client = _client(graph)

    first, link, pages = asyncio.run(_sync(client))
    assert [i["subject"] for i in first] == ["m0", "m1", "m2", "m3", "m4"]
    assert pages == 3  # two per page, as asked
    assert "$deltatoken=" in link

    boxes.update(USER, ids[0], subject="m0 edited")
    boxes.delete(USER, ids[1])
    boxes.move(USER, ids[2], archive.id)
    fresh = boxes.deliver(USER, {"subject": "m5"}).id
    second, link2, _ = asyncio.run(_sync(client, link))
    by_id = {i["id"]: i for i in second}
    assert set(by_id) == {ids[0], ids[1], ids[2], fresh}
    assert by_id[ids[0]]["subject"] == "m0 edited"
    assert by_id[ids[1]]["@removed"] == {"reason": "deleted"}
    assert by_id[ids[2]]["@removed"] == {"reason": "deleted"}
    assert by_id[fresh]["subject"] == "m5"
    assert asyncio.run(_sync(client, link2))[0] == []  # nothing since


def test_a_moved_message_keeps_only_its_immutable_id() -> None:
    """Without `Prefer: IdType="ImmutableId"` Outlook gives a moved message a new id: the id
    a notification named finds nothing, and the old folder's delta reports it removed."""
    graph = FakeGraph(VirtualClock())
    boxes = graph.mailboxes
    stored = boxes.deliver(USER, {"subject": "moved by a rule"})
    archive = boxes.add_folder(USER, "Projects")
    client = _client(graph)
    old_ids = {i["id"] for i in asyncio.run(_sync(client, immutable=False))[0]}
    _, link, _ = asyncio.run(_sync(client))
    _, plain_link, _ = asyncio.run(_sync(client, immutable=False))
    (old_id,) = old_ids
    assert old_id != stored.id

    boxes.move(USER, stored.id, archive.id)
    messages = client.users.by_user_id(USER).messages
    with pytest.raises(ODataError) as gone:
        asyncio.run(messages.by_message_id(old_id).get())
    assert gone.value.response_status_code == 404
    found = asyncio.run(messages.by_message_id(stored.id).get(_immutable_ids()))
    assert found is not None
    assert (found.id, found.subject) == (stored.id, "moved by a rule")
    assert found.parent_folder_id == archive.id
    # Each delta names the change with the ids its requests asked for.
    assert asyncio.run(_sync(client, link))[0] == [
        {"id": stored.id, "subject": None, "@removed": {"reason": "deleted"}}
    ]
    assert asyncio.run(_sync(client, plain_link, immutable=False))[0] == [
        {"id": old_id, "subject": None, "@removed": {"reason": "deleted"}}
    ]
    in_archive = asyncio.run(_sync(client, folder=archive.id, immutable=False))[0]
    assert [i["id"] for i in in_archive] == [stored.rest_id]
    assert stored.rest_id != old_id


def test_an_expired_or_reset_token_is_410_and_a_full_sync_starts_over() -> None:
    graph = FakeGraph(VirtualClock())
    graph.mailboxes.deliver(USER, {"subject": "kept"})
    client = _client(graph)
    _, link, _ = asyncio.run(_sync(client))
    graph.mailboxes.expire_delta_tokens(USER)
    with pytest.raises(ODataError) as expired:
        asyncio.run(_sync(client, link))
    assert expired.value.response_status_code == 410
    assert expired.value.error is not None
    assert expired.value.error.code == "syncStateNotFound"
    items, link, _ = asyncio.run(_sync(client))  # the full sync after it
    assert [i["subject"] for i in items] == ["kept"]
    graph.mailboxes.reset_sync(USER)
    with pytest.raises(ODataError) as reset:
        asyncio.run(_sync(client, link))
    assert reset.value.response_status_code == 410
    assert reset.value.error is not None
    assert reset.value.error.code == "resyncRequired"
    headers: Any = reset.value.response_headers
    assert str(headers.get("Location")).endswith("/messages/delta?$deltatoken=")


def test_mail_needs_mail_read_and_graphs_403_says_access_denied() -> None:
    graph = FakeGraph(VirtualClock(), permissions={"Chat.Read.All", "Mail.ReadBasic.All"})
    graph.mailboxes.deliver(USER, {"subject": "private"})
    with pytest.raises(ODataError) as denied:
        asyncio.run(_sync(_client(graph)))
    assert denied.value.response_status_code == 403
    assert denied.value.error is not None
    assert denied.value.error.code == "ErrorAccessDenied"


def test_an_unknown_selected_property_is_refused_as_graph_does() -> None:
    graph = FakeGraph(VirtualClock())
    stored = graph.mailboxes.deliver(USER, {"subject": "x"})
    builder = _client(graph).users.by_user_id(USER).messages.by_message_id(stored.id)
    query = builder.MessageItemRequestBuilderGetQueryParameters(select=["subject", "nope"])
    with pytest.raises(ODataError) as refused:
        asyncio.run(builder.get(RequestConfiguration(query_parameters=query)))
    assert refused.value.response_status_code == 400
    assert "nope" in str(refused.value.error.message if refused.value.error else "")
