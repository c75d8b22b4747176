"""Messages over 1 MB, as Graph delivers them into Event Hubs: the event names a blob, and
the blob holds the item's `resource`, `resourceData` and `encryptedContent`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphtap.notifications.crypto import decrypt_content
from graphtap.notifications.keyring import KeyRing
from graphtap.notifications.model import ChangeNotification, parse_collection
from graphtap.simulation.emitter import (
    EVENT_LIMIT_BYTES,
    LARGE_HTML_CHARS,
    SimulationSettings,
    simulate,
)
from graphtap.simulation.output import write_events
from graphtap.subscriptions.certificates import create_certificate, load_certificate


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("large-keys")
    create_certificate(directory, certificate_id="sim")
    return directory


def _stream(keys: Path, **options: float) -> list:  # type: ignore[type-arg]
    settings = SimulationSettings(count=30, seed=4, sensitive_share=1.0, **options)  # type: ignore[arg-type]
    return list(
        simulate(
            settings,
            certificate=load_certificate(keys / "sim.cert.pem"),
            certificate_id="sim",
            client_state="cs",
        )
    )


def test_a_large_message_travels_as_graph_sends_it(keys: Path) -> None:
    ring = KeyRing.load([keys])
    events = _stream(keys, large_share=0.3)
    large = [e for e in events if e.payloads]
    assert len(large) >= 3
    for event in large:
        (item,) = json.loads(event.body)["value"]
        (storage_id, blob) = event.payloads[0]
        assert item["additionalPayloadStorageId"] == storage_id
        assert not {"resource", "resourceData", "encryptedContent"} & set(item)
        assert len(event.body) < 2048  # the event itself is small
        payload = json.loads(blob)
        assert set(payload) == {"resource", "resourceData", "encryptedContent"}
        content = payload["encryptedContent"]
        assert len(content["data"]) > EVENT_LIMIT_BYTES
        # Put back into the item, it is the rich notification Graph would have sent.
        whole = json.dumps({"value": [{**item, **payload}]})
        (merged,) = parse_collection(whole, max_bytes=4 * EVENT_LIMIT_BYTES).items
        assert isinstance(merged, ChangeNotification)
        assert merged.encrypted_content is not None
        key = ring.key_for(merged.encrypted_content).private_key
        message = decrypt_content(merged.encrypted_content, key)
        assert message["id"] == payload["resourceData"]["id"]
        assert len(message["body"]["content"]) > LARGE_HTML_CHARS
        assert event.planted  # what inspection must still find in it
        assert event.changes == 1


def test_every_change_is_emitted_once_large_or_not(keys: Path) -> None:
    events = _stream(keys, large_share=0.5)
    assert sum(e.changes for e in events) == 30
    ids = [e.payloads[0][0] for e in events if e.payloads]
    assert len(ids) == len(set(ids))  # each payload in a blob of its own


def test_payloads_need_a_store_to_go_to(keys: Path, tmp_path: Path) -> None:
    events = _stream(keys, large_share=0.3)
    with pytest.raises(ValueError, match="needs a payload store"):
        write_events(events, out_file=tmp_path / "events.jsonl")
    totals = write_events(events, out_file=tmp_path / "events.jsonl", payload_store=tmp_path)
    written = {p.name for p in tmp_path.iterdir() if p.name != "events.jsonl"}
    assert written == {e.payloads[0][0] for e in events if e.payloads}
    assert totals["large"] == len(written)
