"""Dead letters read back from each store and replayed through the pipeline, once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from graphtap.processing import compose
from graphtap.processing.committer import BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.deadletters import ClientStateMask, DeadLetter
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import Pipeline, PipelineSettings
from graphtap.processing.replay import (
    BlobDeadLetterReader,
    DeadLetterReader,
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
from tests.fakes.azure_transport import TokenCredential
from tests.fakes.azurite import AzuriteStorage

from .conftest import CLIENT_STATE, HASH_KEY, Scenario

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


@pytest.mark.parametrize(
    "text",
    ["blob:container", "blob:https://a.blob.core.windows.net", "ftp:x", "sqlite:", "jsonl"],
)
def test_a_store_name_that_names_no_store_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"give|blob store|container"):
        StoreName.parse(text)
