"""Dead letters keep an event's body once, never the clientState, and still allow a replay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphtap.hosts.webapp import StatusSources, render_status_page
from graphtap.inspection import Inspector
from graphtap.notifications.keyring import KeyRing
from graphtap.processing.deadletters import (
    OVERSIZED_PREFIX_BYTES,
    ClientStateMask,
    DeadLetter,
    compress_ranges,
    expand_ranges,
)
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import EventResult, Pipeline, PipelineSettings
from graphtap.processing.runner import Processor
from graphtap.processing.sinks.blob import BlobDeadLetters
from graphtap.processing.sinks.jsonl import JsonlDeadLetters, JsonlVerdictSink
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.processing.sources.jsonl import JsonlSource
from graphtap.simulation.emitter import SimulationSettings, collection, simulate
from graphtap.subscriptions.certificates import (
    CertificateFiles,
    create_certificate,
    load_certificate,
)
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

from .conftest import CLIENT_STATE, HASH_KEY, Scenario

MB = 1024 * 1024


def flood(items: int = 300_000, size: int = 1_000_000) -> bytes:
    """One event of `items` empty (so malformed) items, padded to `size` bytes."""
    head, tail = b'{"value":[' + b",".join([b"{}"] * items) + b'],"pad":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def write_blobs(service: AzuriteStorage, letters: list[DeadLetter]) -> int:
    async def scenario() -> int:
        blobs = BlobDeadLetters(
            service.account_url,
            "dead-letters",
            credential=TokenCredential(),
            transport=service.transport(),
        )
        try:
            return await blobs.write_dead_letters(letters)
        finally:
            await blobs.close()

    return asyncio.run(scenario())


def test_an_event_of_300000_bad_items_is_stored_once_in_every_store(
    pipeline: Pipeline, tmp_path: Path, azurite_storage: AzuriteStorage
) -> None:
    body = flood()
    assert len(body) == 1_000_000
    [result] = pipeline.process_batch([SourceEvent("0", 1, body)])
    [letter] = result.dead_letters
    assert letter.reason == "malformed_notification"
    assert letter.items == "0-299999"
    assert letter.item_count == 300_000
    assert letter.event.body == body.decode()  # whole, as received

    store = SqliteStore(tmp_path / "v.sqlite")
    assert store.write_dead_letters(result.dead_letters) == 1
    assert store.write_dead_letters(result.dead_letters) == 0  # a replay adds nothing
    store.close()
    sqlite_bytes = sum(p.stat().st_size for p in tmp_path.glob("v.sqlite*"))
    jsonl = JsonlDeadLetters(tmp_path / "dl.jsonl")
    assert jsonl.write_dead_letters(result.dead_letters) == 1
    jsonl.close()
    service = azurite_storage
    service.create_container("dead-letters")
    assert write_blobs(service, result.dead_letters) == 1
    blob_bytes = sum(len(b) for b in service.blobs("dead-letters").values())
    for stored in (sqlite_bytes, (tmp_path / "dl.jsonl").stat().st_size, blob_bytes):
        assert stored < 2.5 * len(body)  # before: the body again for every item, 300 GB


def test_memory_stays_bounded_while_a_flood_is_processed(pipeline: Pipeline) -> None:
    body = flood()
    tracemalloc.start()
    try:
        [result] = pipeline.process_batch([SourceEvent("0", 1, body)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.dead_letters[0].item_count == 300_000
    assert peak < 64 * MB, f"peak {peak / MB:.0f} MB"


def test_alike_failures_of_many_items_share_one_letter_per_reason(
    pipeline: Pipeline, scenario: Scenario
) -> None:
    good = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    items: list[Any] = [good]
    for n in range(40):
        item = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
        item["clientState"] = "forged" if n % 2 else None
        items.append(item)
    items += [7, "x", {"changeType": "created"}]
    result = pipeline.process(scenario.event(collection(items)))
    assert len(result.verdicts) == 1
    by_reason = {str(d.reason): d for d in result.dead_letters}
    assert set(by_reason) == {"client_state_mismatch", "malformed_notification"}
    mismatch = by_reason["client_state_mismatch"]
    assert mismatch.items == "1-40"
    assert mismatch.item_count == 40
    assert "no clientState" in mismatch.message
    assert "matches none" in mismatch.message
    malformed = by_reason["malformed_notification"]
    assert malformed.item_indexes == [41, 42, 43]
    assert "value[41]: item is a JSON int" in malformed.message
    assert {d.event.key for d in result.dead_letters} == {mismatch.event.key}  # one body


def test_an_oversized_event_keeps_a_bounded_prefix_its_size_and_hash(pipeline: Pipeline) -> None:
    item = json.dumps({"subscriptionId": "s", "clientState": CLIENT_STATE}).encode()
    head = b'{"value":[' + b"x" * (OVERSIZED_PREFIX_BYTES - 30)
    body = head + item + b"," + b"y" * (3 * MB) + b"]}"  # the prefix ends inside the secret
    [letter] = pipeline.process(SourceEvent("0", 5, body)).dead_letters
    assert letter.reason == "oversized_event"
    event = letter.event
    assert event.truncated
    assert event.size == len(body)
    assert event.key == hashlib.sha256(body).hexdigest()
    assert len(event.body) <= OVERSIZED_PREFIX_BYTES
    assert event.body.startswith(head.decode())
    assert CLIENT_STATE[:6] not in event.body  # not even the part the prefix cut


def test_a_stored_dead_letter_gives_the_original_item_back_for_a_replay(
    inspector: Inspector, pipeline: Pipeline, scenario: Scenario, tmp_path: Path
) -> None:
    """A key loaded late: its items are dead letters, then replayed from the store."""
    items = [scenario.emitter.change(scenario.tenant.post(sensitive=True), "created")]
    items.append(scenario.emitter.change(scenario.tenant.post(sensitive=False), "created"))
    items[1]["clientState"] = "previous-state"  # the rotated value, accepted as well
    body = collection(items)
    create_certificate(tmp_path / "other", certificate_id="cert-b")
    without_the_key = Pipeline.build(
        keys=KeyRing.load([tmp_path / "other"]),
        client_states=[CLIENT_STATE, "previous-state"],
        inspector=inspector,
    )
    [letter] = without_the_key.process(SourceEvent("0", 3, body)).dead_letters
    assert letter.reason == "unknown_certificate"
    store = SqliteStore(tmp_path / "v.sqlite")
    store.write_dead_letters([letter])
    store.close()
    with sqlite3.connect(tmp_path / "v.sqlite") as db:
        kept, positions = db.execute(
            "SELECT e.body, d.items FROM dead_letters d"
            " JOIN dead_letter_events e ON e.event_key = d.event_key"
        ).fetchone()
    assert CLIENT_STATE not in kept
    assert "previous-state" not in kept
    mask = ClientStateMask([], HASH_KEY)  # the operator's: the environment's key
    restored = mask.restore(kept, [CLIENT_STATE, "previous-state"])
    assert restored == body  # byte for byte
    assert [json.loads(restored)["value"][i] for i in expand_ranges(positions)] == items
    replayed = pipeline.process(SourceEvent("0", 3, restored))
    assert len(replayed.verdicts) == 2
    assert replayed.dead_letters == []


@given(st.lists(st.integers(0, 500), max_size=60))
def test_item_ranges_round_trip(indexes: list[int]) -> None:
    text = compress_ranges(indexes)
    assert expand_ranges(text) == sorted(set(indexes)) if indexes else text == ""


def hostile_bodies(scenario: Scenario, cert: CertificateFiles) -> list[bytes]:
    """Events that carry the clientState into every kind of dead letter."""
    secret = CLIENT_STATE
    fresh = [
        scenario.emitter.change(scenario.tenant.post(sensitive=False), "created") for _ in range(8)
    ]
    swapped = [fresh[0], fresh[1]]
    swapped[0]["encryptedContent"], swapped[1]["encryptedContent"] = (
        swapped[1]["encryptedContent"],
        swapped[0]["encryptedContent"],
    )
    tampered = dict(fresh[2], encryptedContent=dict(fresh[2]["encryptedContent"], data="QUJD"))
    no_tenant = {k: v for k, v in fresh[3].items() if k != "tenantId"}
    renamed = dict(fresh[4], changeType="renamed")
    escaped = json.dumps({"value": [dict(fresh[5], tenantId=None)]}).replace(
        secret, "\\u0073" + secret[1:]
    )
    lifecycle = scenario.emitter.lifecycle(
        next(iter(scenario.emitter.subscriptions.values())), "missed"
    )
    events = [
        e.body
        for e in simulate(
            SimulationSettings(count=40, seed=7, fault_share=0.5, lifecycle_share=0.1),
            certificate=load_certificate(cert.certificate_path),
            certificate_id="cert-a",
            client_state=secret,
        )
    ]
    return [
        *events,
        collection(swapped),
        collection([tampered, no_tenant, renamed, {"clientState": secret}]),
        collection([dict(fresh[4], changeType=secret), dict(fresh[5], clientState=secret * 2)]),
        collection([dict(fresh[6], resource=secret, tenantId=None)]),
        escaped.encode(),
        collection([fresh[7]])[:-40],  # cut: not JSON, the secret inside
        b'{"clientState":"' + secret.encode() + b'","value":[' + b"1," * (600 * 1024) + b"1]}",
        collection([lifecycle, {"changeType": "created", "clientState": secret}]),
        collection([dict(lifecycle, lifecycleEvent=secret), dict(lifecycle, tenantId=secret)]),
    ]


def test_the_client_state_reaches_no_store_log_or_status_page(
    pipeline_settings: PipelineSettings,
    scenario: Scenario,
    cert_a: CertificateFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    azurite_storage: AzuriteStorage,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(hostile_bodies(scenario, cert_a)) + b"\n")
    results: list[EventResult] = []
    runs = []
    for name, sink, letters in (
        ("sqlite", SqliteStore(tmp_path / "v.sqlite"), None),
        (
            "jsonl",
            JsonlVerdictSink(tmp_path / "v.jsonl"),
            JsonlDeadLetters(tmp_path / "dl.jsonl"),
        ),
    ):
        lifecycle = LifecycleQueue(tmp_path / f"{name}.lifecycle.sqlite")
        processor = Processor(
            source=JsonlSource(source),
            sink=sink,
            dead_letters=letters or sink,  # type: ignore[arg-type]
            lifecycle=lifecycle,
            settings=pipeline_settings,
        )
        runs.append(processor.run())
        sink.close()
        if letters is not None:
            letters.close()
        lifecycle.close()
    pipeline = Pipeline.from_settings(pipeline_settings)
    for line in source.read_bytes().splitlines():
        results.append(pipeline.process(SourceEvent("jsonl", 0, line)))
    service = azurite_storage
    service.create_container("dead-letters")
    write_blobs(service, [d for r in results for d in r.dead_letters])

    summary = runs[0]
    reasons = set(summary.dead_letters_by_reason)
    assert {
        "resource_mismatch",
        "signature_mismatch",
        "malformed_notification",
        "malformed_event",
        "oversized_event",
        "client_state_mismatch",
        "unknown_certificate",
        "payload_unavailable",
    } <= reasons
    assert summary.lifecycle_queued > 0
    page = render_status_page(
        StatusSources(
            mode="local", summary=lambda: summary, partitions=lambda: [], ready=lambda: True
        )
    )
    stored = {
        **{p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "events.jsonl"},
        **{f"blob:{name}": body for name, body in service.blobs("dead-letters").items()},
        "logs": caplog.text.encode(),
        "status page": page.encode(),
        "summary": json.dumps(summary.to_dict()).encode(),
    }
    assert any(b"dead_letter_events" in data for data in stored.values())
    forms = (CLIENT_STATE.encode(), b"\\u0073" + CLIENT_STATE[1:].encode())
    leaks = [name for name, data in stored.items() for form in forms if form in data]
    assert leaks == []


def test_an_earlier_releases_dead_letters_move_to_one_body_each(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    body = json.dumps({"value": [{"clientState": CLIENT_STATE}, {"clientState": "x"}]})
    digest = hashlib.sha256(body.encode()).hexdigest()
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, dead_letter_key TEXT NOT NULL"
            " UNIQUE, reason TEXT NOT NULL, message TEXT NOT NULL, item_index INTEGER,"
            " partition TEXT NOT NULL, offset INTEGER NOT NULL, occurred_at REAL NOT NULL,"
            " event TEXT NOT NULL)"
        )
        for index in (0, 1):
            db.execute(
                "INSERT INTO dead_letters (dead_letter_key, reason, message, item_index,"
                " partition, offset, occurred_at, event) VALUES (?,?,?,?,?,?,?,?)",
                (f"{digest}:{index}", "malformed_notification", "m", index, "0", 4, 1.0, body),
            )
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        letters = db.execute(
            "SELECT dead_letter_key, items, item_count, event_key FROM dead_letters ORDER BY id"
        ).fetchall()
        events = db.execute("SELECT event_key, size, body FROM dead_letter_events").fetchall()
    assert letters == [(f"{digest}:0", "0", 1, digest), (f"{digest}:1", "1", 1, digest)]
    [(key, size, kept)] = events
    assert (key, size) == (digest, len(body))
    assert CLIENT_STATE not in kept
    assert [i["clientState"] for i in json.loads(kept)["value"]] == [
        "graphtap-masked-client-state:removed"
    ] * 2


def test_simulated_and_resynced_notifications_name_their_own_content(
    pipeline: Pipeline, cert_a: CertificateFiles
) -> None:
    """The simulator (and the fake Graph, which shares its items) binds resource to content."""
    events = simulate(
        SimulationSettings(count=300, seed=random.Random(3).randrange(1000)),
        certificate=load_certificate(cert_a.certificate_path),
        certificate_id="cert-a",
        client_state=CLIENT_STATE,
    )
    results = pipeline.process_batch([SourceEvent("0", n, e.body) for n, e in enumerate(events)])
    assert sum(len(r.verdicts) for r in results) >= 300
    assert [d.message for r in results for d in r.dead_letters] == []


@pytest.mark.parametrize(
    "body",
    [
        # Graph's shape: masked in place, every other byte kept
        '{"value": [{"clientState" : "%s", "resource": "r"}, {"clientState": "other"}]}',
        # the secret where no clientState belongs
        '{"value": [{"resource": "chats(\'%s\')", "clientState": null}]}',
        # an escaped name, an escaped value, a value that is not a string
        '{"value": [{"client\\u0053tate": "\\u0073%s"}, {"clientState": 7}]}',
    ],
)
def test_the_mask_hides_the_secret_and_restores_the_body(body: str) -> None:
    secret = CLIENT_STATE
    text = body % (secret[1:] if "\\u0073" in body else secret)
    kept, truncated = ClientStateMask([secret], HASH_KEY).mask(text.encode())
    assert not truncated
    assert secret not in kept
    assert secret[1:] not in kept
    restored = ClientStateMask([], HASH_KEY).restore(kept, [secret, "other"])
    if "\\u" not in body and ": 7" not in body:
        assert restored == text.encode()  # byte for byte
    else:  # re-serialized: the same document; a value that was no string stays masked
        seven = ClientStateMask([secret], HASH_KEY).marker("7")
        assert json.loads(restored) == {"value": [{"clientState": secret}, {"clientState": seven}]}
