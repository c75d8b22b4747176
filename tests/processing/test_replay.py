"""Dead letters read back from each store and replayed through the pipeline, once."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from graphtap.processing import compose
from graphtap.processing.committer import BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.deadletters import ClientStateMask, DeadLetter
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.replay import (
    BlobDeadLetterReader,
    DeadLetterReader,
    DeadLetterStoreError,
    JsonlDeadLetterReader,
    LetterFilter,
    ReplayReport,
    SqliteDeadLetterReader,
    StoredLetter,
    StoreName,
    replay,
)
from graphtap.processing.sinks.blob import BlobDeadLetters
from graphtap.processing.sinks.jsonl import JsonlDeadLetters
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources import SourceEvent
from graphtap.simulation.emitter import collection
from graphtap.subscriptions.certificates import create_certificate
from graphtap.subscriptions.resync import LARGE_ITEM_BYTES, RESYNC_PARTITION, pack
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

from .conftest import CLIENT_STATE, HASH_KEY, Scenario, mutate

CONTAINER = "dead-letters"


def letters_without_the_key(
    scenario: Scenario, tmp_path: Path, *, events: int = 3
) -> tuple[list[DeadLetter], list[bytes]]:
    """Events whose key was not loaded: one unknown_certificate letter each."""
    create_certificate(tmp_path / "other", certificate_id="cert-b")
    settings = compose.pipeline_settings(
        key_paths=(tmp_path / "other",), client_states=(CLIENT_STATE,), hash_key=HASH_KEY
    )
    pipeline = Pipeline.from_settings(settings)
    bodies = [
        collection(
            [
                scenario.emitter.change(scenario.tenant.post(sensitive=n % 2 == 0), "created")
                for n in range(2)
            ]
        )
        for _ in range(events)
    ]
    results = pipeline.process_batch([SourceEvent("0", i, b) for i, b in enumerate(bodies)])
    letters = [letter for result in results for letter in result.dead_letters]
    assert {str(x.reason) for x in letters} == {"unknown_certificate"}
    return letters, bodies


def run_replay(
    reader: DeadLetterReader,
    settings: PipelineSettings,
    sink: Path,
) -> ReplayReport:
    async def scenario() -> ReplayReport:
        letters = await reader.letters(
            LetterFilter(reason="unknown_certificate", include_replayed=False)
        )
        return await _replay_all(reader, letters, settings, sink)

    return asyncio.run(scenario())


def verdicts(sink: Path) -> list[str]:
    with sqlite3.connect(sink) as db:
        return [row[0] for row in db.execute("SELECT verdict_key FROM verdicts")]


def test_the_mask_round_trips_to_the_body_whose_hash_names_the_event(
    scenario: Scenario, tmp_path: Path
) -> None:
    letters, bodies = letters_without_the_key(scenario, tmp_path, events=1)
    kept = letters[0].event.body
    assert CLIENT_STATE not in kept
    restored = ClientStateMask([], HASH_KEY).restore(kept, [CLIENT_STATE])
    assert restored == bodies[0]
    assert hashlib.sha256(restored).hexdigest() == letters[0].event.key
    # the wrong hash key restores nothing: the body keeps its markers
    assert CLIENT_STATE not in ClientStateMask([], b"x" * 32).restore(kept, [CLIENT_STATE]).decode()


def test_a_jsonl_store_is_replayed_once_and_marked(
    scenario: Scenario, tmp_path: Path, pipeline_settings: PipelineSettings
) -> None:
    letters, _ = letters_without_the_key(scenario, tmp_path)
    path = tmp_path / "dead.jsonl"
    store = JsonlDeadLetters(path)
    store.write_dead_letters(letters)
    store.close()
    reader = JsonlDeadLetterReader(path)
    sink = tmp_path / "v.sqlite"
    report = run_replay(reader, pipeline_settings, sink)
    assert (len(report.replayed), report.still_failing, report.new_verdicts) == (3, [], 6)
    assert len(set(verdicts(sink))) == len(verdicts(sink)) == 6
    listed = asyncio.run(reader.letters(LetterFilter()))
    assert all(x.replayed_at is not None for x in listed)
    assert asyncio.run(reader.letters(LetterFilter(include_replayed=False))) == []
    # marked letters are not replayed again; with them asked for, nothing new is added
    assert run_replay(reader, pipeline_settings, sink).events == 0
    again = asyncio.run(reader.letters(LetterFilter()))
    report = asyncio.run(_replay_all(reader, again, pipeline_settings, sink))
    assert (report.events, report.new_verdicts) == (3, 0)
    assert len(verdicts(sink)) == 6
    # the processor still appends to a file holding marks
    reopened = JsonlDeadLetters(path)
    assert reopened.write_dead_letters(letters) == 0
    reopened.close()


async def _replay_all(
    reader: DeadLetterReader, letters: list[StoredLetter], settings: PipelineSettings, sink: Path
) -> ReplayReport:
    store = SqliteStore(sink)
    queue = LifecycleQueue(sink)
    try:
        return await replay(
            reader,
            letters,
            settings=settings,
            sink=BlockingVerdicts(store),
            dead_letters=BlockingDeadLetters(store),
            lifecycle=queue,
        )
    finally:
        store.close()
        queue.close()


def test_a_cause_not_fixed_dead_letters_again_under_the_same_key_unmarked(
    scenario: Scenario, tmp_path: Path
) -> None:
    letters, _ = letters_without_the_key(scenario, tmp_path)
    sink = tmp_path / "v.sqlite"
    store = SqliteStore(sink)
    store.write_dead_letters(letters)
    store.close()
    still_without = compose.pipeline_settings(
        key_paths=(tmp_path / "other",), client_states=(CLIENT_STATE,), hash_key=HASH_KEY
    )
    reader = SqliteDeadLetterReader(sink)
    try:
        report = run_replay(reader, still_without, sink)
        assert (report.replayed, len(report.still_failing)) == ([], 3)
        assert "cert-a" in report.still_failing[0][1]
        with sqlite3.connect(sink) as db:
            assert db.execute("SELECT count(*) FROM dead_letters").fetchone() == (3,)
        pending = asyncio.run(reader.letters(LetterFilter(include_replayed=False)))
        assert len(pending) == 3
    finally:
        asyncio.run(reader.close())


def test_a_blob_container_is_replayed_once_and_marked_with_marker_blobs(
    scenario: Scenario,
    tmp_path: Path,
    pipeline_settings: PipelineSettings,
    azurite_storage: AzuriteStorage,
) -> None:
    letters, _ = letters_without_the_key(scenario, tmp_path)
    service = azurite_storage
    service.create_container(CONTAINER)

    def container_options() -> dict[str, object]:
        return {"credential": TokenCredential(), "transport": service.transport()}

    async def write() -> None:
        blobs = BlobDeadLetters(service.account_url, CONTAINER, **container_options())  # type: ignore[arg-type]
        try:
            await blobs.write_dead_letters(letters)
        finally:
            await blobs.close()

    asyncio.run(write())
    name = StoreName.parse(f"blob:{service.account_url}/{CONTAINER}")
    sink = tmp_path / "v.sqlite"

    def replay_once() -> ReplayReport:
        async def scenario() -> ReplayReport:
            reader = BlobDeadLetterReader.open(
                name.account_url, name.container, **container_options()
            )
            again = BlobDeadLetters(service.account_url, CONTAINER, **container_options())  # type: ignore[arg-type]
            try:
                store = SqliteStore(sink)
                queue = LifecycleQueue(sink)
                try:
                    letters = await reader.letters(LetterFilter(reason="unknown_certificate"))
                    return await replay(
                        reader,
                        letters,
                        settings=pipeline_settings,
                        sink=BlockingVerdicts(store),
                        dead_letters=again,
                        lifecycle=queue,
                    )
                finally:
                    store.close()
                    queue.close()
            finally:
                await reader.close()
                await again.close()

        return asyncio.run(scenario())

    first = replay_once()
    assert (len(first.replayed), first.new_verdicts, first.still_failing) == (3, 6, [])
    stored = service.blobs(CONTAINER)
    marks = sorted(n for n in stored if n.startswith("replayed/"))
    assert marks == sorted(f"replayed/{x.key.replace(':', '-')}.json" for x in letters)
    assert {json.loads(stored[m])["dead_letter_key"] for m in marks} == {x.key for x in letters}
    second = replay_once()  # --again: the marked letters replayed, nothing added
    assert (second.events, second.new_verdicts) == (3, 0)
    assert len(verdicts(sink)) == 6

    async def listed() -> list[float | None]:
        reader = BlobDeadLetterReader.open(name.account_url, name.container, **container_options())
        try:
            one = await reader.letter(letters[0].key)
            assert one is not None
            assert one.replayed_at is not None
            return [x.replayed_at for x in await reader.letters(LetterFilter())]
        finally:
            await reader.close()

    assert all(at is not None for at in asyncio.run(listed()))


def _stored(letters: list[DeadLetter], path: Path) -> SqliteDeadLetterReader:
    store = SqliteStore(path)
    store.write_dead_letters(letters)
    store.close()
    return SqliteDeadLetterReader(path)


def _replay_reason(
    reader: DeadLetterReader, reason: str, settings: PipelineSettings, sink: Path
) -> ReplayReport:
    async def scenario() -> ReplayReport:
        letters = await reader.letters(LetterFilter(reason=reason, include_replayed=False))
        return await _replay_all(reader, letters, settings, sink)

    return asyncio.run(scenario())


def _letter_rows(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT dead_letter_key, reason FROM dead_letters ORDER BY id").fetchall()


def test_a_forged_item_beside_replayed_ones_stays_one_letter_under_its_key(
    scenario: Scenario, tmp_path: Path, pipeline_settings: PipelineSettings
) -> None:
    """The forged clientState is never put back, so the replayed body is not the one first
    received: its letters still refer to the event as kept, under the same keys."""
    body = scenario.body(
        scenario.emitter.change(scenario.tenant.post(sensitive=False), "created"),
        scenario.emitter.change(scenario.tenant.post(sensitive=True), "created"),
    )
    body = mutate(body, lambda doc: doc["value"][0].update(clientState="forged-by-a-sender"))
    create_certificate(tmp_path / "other", certificate_id="cert-b")
    without_the_key = compose.pipeline_settings(
        key_paths=(tmp_path / "other",), client_states=(CLIENT_STATE,), hash_key=HASH_KEY
    )
    [result] = Pipeline.from_settings(without_the_key).process_batch([SourceEvent("0", 7, body)])
    sink = tmp_path / "v.sqlite"
    reader = _stored(result.dead_letters, sink)
    before = _letter_rows(sink)
    assert sorted(reason for _, reason in before) == [
        "client_state_mismatch",
        "unknown_certificate",
    ]
    try:
        report = _replay_reason(reader, "unknown_certificate", pipeline_settings, sink)
        assert (report.still_failing, report.new_verdicts) == ([], 1)
        assert [x.items for x in report.replayed] == ["1"]
        # the forged item's letter, pending, replayed twice: it fails again under its key
        for _ in range(2):
            forged = _replay_reason(reader, "client_state_mismatch", pipeline_settings, sink)
            [(_, why)] = forged.still_failing
            assert "clientState" in why
        assert _letter_rows(sink) == before
        with sqlite3.connect(sink) as db:
            assert db.execute("SELECT count(*) FROM dead_letter_events").fetchone() == (1,)
    finally:
        asyncio.run(reader.close())


def test_a_letter_whose_items_now_fail_for_another_reason_is_not_marked(
    scenario: Scenario, tmp_path: Path, keys_dir: Path, pipeline_settings: PipelineSettings
) -> None:
    """Replayed with the key loaded but the clientState rotated away: no verdict, so the
    letter stays pending; the items wait in a client_state_mismatch letter of the same
    event, which a replay with the old value configured again turns into verdicts."""
    letters, _ = letters_without_the_key(scenario, tmp_path, events=1)
    sink = tmp_path / "v.sqlite"
    reader = _stored(letters, sink)
    rotated = compose.pipeline_settings(
        key_paths=(keys_dir,), client_states=("the-next-client-state",), hash_key=HASH_KEY
    )
    try:
        report = _replay_reason(reader, "unknown_certificate", rotated, sink)
        assert (report.replayed, report.new_verdicts) == ([], 0)
        [(_, why)] = report.still_failing
        assert why.startswith("now client_state_mismatch: ")
        event_key = letters[0].event.key
        assert _letter_rows(sink) == [
            (f"{event_key}:unknown_certificate", "unknown_certificate"),
            (f"{event_key}:client_state_mismatch", "client_state_mismatch"),
        ]
        fixed = _replay_reason(reader, "client_state_mismatch", pipeline_settings, sink)
        assert (len(fixed.replayed), fixed.still_failing, fixed.new_verdicts) == (1, [], 2)
        last = _replay_reason(reader, "unknown_certificate", pipeline_settings, sink)
        assert (len(last.replayed), last.new_verdicts) == (1, 0)
    finally:
        asyncio.run(reader.close())


def test_a_body_over_the_replays_size_limit_is_reported_not_marked(
    scenario: Scenario, tmp_path: Path, pipeline_settings: PipelineSettings
) -> None:
    letters, _ = letters_without_the_key(scenario, tmp_path, events=1)
    sink = tmp_path / "v.sqlite"
    reader = _stored(letters, sink)
    smaller = dataclasses.replace(pipeline_settings, max_event_bytes=1024)
    try:
        report = _replay_reason(reader, "unknown_certificate", smaller, sink)
    finally:
        asyncio.run(reader.close())
    assert report.replayed == []
    [(_, why)] = report.still_failing
    assert why.startswith("now oversized_event: ")


def test_records_that_are_not_dead_letters_are_errors_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    for lines, named in [
        (b"5\n", "line 1 is not a JSON object"),
        (b'{"dead_letter_key": "k:r", "reason": "r"}\n', "line 1: not a dead-letter record"),
        (
            b'{"event_key": "e", "body": "{}"}\n'
            b'{"dead_letter_key": "e:r", "reason": "r", "event_key": "e", "items": "1-x"}\n',
            "line 2: not a dead-letter record",
        ),
        (
            b'{"event_key": "e", "body": "{}", "payloads": {"first": {}}}\n',
            "its payloads are not objects by item index",
        ),
    ]:
        path.write_bytes(lines)
        reader = JsonlDeadLetterReader(path)
        with pytest.raises(DeadLetterStoreError, match=named):
            asyncio.run(reader.letters(LetterFilter()))


def test_a_blob_that_is_not_a_dead_letter_is_an_error_naming_it(
    azurite_storage: AzuriteStorage,
) -> None:
    service = azurite_storage
    service.create_container(CONTAINER)
    service.put_blob(CONTAINER, "unknown_certificate/e-unknown_certificate.json", b"[1]")
    service.put_blob(CONTAINER, "events/e.json", b"not json")

    async def read() -> None:
        options = {"credential": TokenCredential(), "transport": service.transport()}
        reader = BlobDeadLetterReader.open(service.account_url, CONTAINER, **options)
        try:
            with pytest.raises(DeadLetterStoreError, match=r"blob unknown_certificate/.* object"):
                await reader.letters(LetterFilter())
            with pytest.raises(DeadLetterStoreError, match=r"blob events/e.json is not JSON"):
                await reader.event("e")
        finally:
            await reader.close()

    asyncio.run(read())


def resynced_large_letter(scenario: Scenario, tmp_path: Path) -> tuple[DeadLetter, str]:
    """A gap-resync event whose one large item came beside the body (no payload store holds
    it) and whose key was not loaded: one unknown_certificate letter; and the message id."""
    post = scenario.tenant.post(sensitive=False)
    post.html = "<p>" + "log line without secrets " * 25_000 + "4111 1111 1111 1111</p>"
    [event] = pack([scenario.emitter.change(post, "created")])
    assert event.fetched is not None
    assert len(event.body) < LARGE_ITEM_BYTES < len(json.dumps(event.fetched[0].properties))
    create_certificate(tmp_path / "other", certificate_id="cert-b")
    without_the_key = compose.pipeline_settings(
        key_paths=(tmp_path / "other",), client_states=(CLIENT_STATE,), hash_key=HASH_KEY
    )
    source = SourceEvent(RESYNC_PARTITION, 1, event.body, dict(event.fetched))
    [result] = Pipeline.from_settings(without_the_key).process_batch([source])
    [letter] = result.dead_letters
    assert str(letter.reason) == "unknown_certificate"
    return letter, post.id


def _written(
    kind: str, letter: DeadLetter, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], DeadLetterReader]:
    """`letter` written by the processor's store of `kind`; how to open that store's reader
    (in the event loop that will use it)."""
    if kind == "sqlite":
        store = SqliteStore(tmp_path / "dead.sqlite")
        store.write_dead_letters([letter])
        store.close()
        return partial(SqliteDeadLetterReader, tmp_path / "dead.sqlite")
    if kind == "jsonl":
        jsonl = JsonlDeadLetters(tmp_path / "dead.jsonl")
        jsonl.write_dead_letters([letter])
        jsonl.close()
        return partial(JsonlDeadLetterReader, tmp_path / "dead.jsonl")
    service: AzuriteStorage = request.getfixturevalue("azurite_storage")
    service.create_container(CONTAINER)

    def options() -> dict[str, Any]:
        return {"credential": TokenCredential(), "transport": service.transport()}

    async def write() -> None:
        blobs = BlobDeadLetters(service.account_url, CONTAINER, **options())
        try:
            await blobs.write_dead_letters([letter])
        finally:
            await blobs.close()

    asyncio.run(write())
    return lambda: BlobDeadLetterReader.open(service.account_url, CONTAINER, **options())


@pytest.mark.parametrize("kind", ["sqlite", "jsonl", "blob"])
def test_a_resynced_item_handed_over_beside_its_event_is_replayed_from_the_store(
    kind: str,
    scenario: Scenario,
    tmp_path: Path,
    pipeline_settings: PipelineSettings,
    request: pytest.FixtureRequest,
) -> None:
    """Gap resync hands a message over 512 KB over beside its event, so no payload store
    holds it: its dead letter keeps it, and a replay reads and inspects the message."""
    letter, message_id = resynced_large_letter(scenario, tmp_path)
    open_reader = _written(kind, letter, tmp_path, request)
    sink = tmp_path / "v.sqlite"

    async def replayed() -> tuple[ReplayReport, list[StoredLetter]]:
        reader = open_reader()
        try:
            letters = await reader.letters(LetterFilter(reason="unknown_certificate"))
            report = await _replay_all(reader, letters, pipeline_settings, sink)
            return report, await reader.letters(LetterFilter(include_replayed=False))
        finally:
            await reader.close()

    report, pending = asyncio.run(replayed())
    assert (len(report.replayed), report.still_failing, report.new_verdicts) == (1, [], 1)
    assert pending == []
    with sqlite3.connect(sink) as db:
        [(content, findings)] = db.execute(
            "SELECT content, findings FROM verdicts WHERE message_id = ?", (message_id,)
        ).fetchall()
    assert content == "inspected"
    assert "credit_card_number" in findings


def test_a_store_from_before_payloads_were_kept_is_read_and_upgraded(
    scenario: Scenario, tmp_path: Path
) -> None:
    path = tmp_path / "v.sqlite"
    letters, _ = letters_without_the_key(scenario, tmp_path / "a", events=1)
    large, _ = resynced_large_letter(scenario, tmp_path / "b")
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, dead_letter_key TEXT NOT NULL"
            " UNIQUE, reason TEXT NOT NULL, message TEXT NOT NULL, items TEXT, item_count"
            " INTEGER NOT NULL, event_key TEXT NOT NULL, partition TEXT NOT NULL, offset"
            " INTEGER NOT NULL, occurred_at REAL NOT NULL)"
        )
        db.execute(
            "CREATE TABLE dead_letter_events (event_key TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " truncated INTEGER NOT NULL, partition TEXT NOT NULL, offset INTEGER NOT NULL,"
            " body TEXT NOT NULL)"
        )
        event = letters[0].event
        db.execute(
            "INSERT INTO dead_letter_events VALUES (?,?,?,?,?,?)",
            (event.key, event.size, 0, event.partition, event.offset, event.body),
        )
    old = SqliteDeadLetterReader(path)
    stored = asyncio.run(old.event(event.key))
    asyncio.run(old.close())
    assert stored is not None
    assert (stored.body, stored.payloads) == (event.body, None)
    store = SqliteStore(path)
    store.write_dead_letters([large])
    store.close()
    reader = SqliteDeadLetterReader(path)
    try:
        kept = asyncio.run(reader.event(large.event.key))
    finally:
        asyncio.run(reader.close())
    assert kept is not None
    assert kept.payloads == large.event.payloads
    assert kept.payloads is not None
    assert set(kept.payloads[0]) == {"resource", "resourceData", "encryptedContent"}


@pytest.mark.parametrize(
    "text",
    ["blob:container", "blob:https://a.blob.core.windows.net", "ftp:x", "sqlite:", "jsonl"],
)
def test_a_store_name_that_names_no_store_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"give|blob store|container"):
        StoreName.parse(text)
