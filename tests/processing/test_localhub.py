"""The embedded hub keeps Event Hubs' semantics: partitions, sequence numbers, checkpoints."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from graphtap.localhub import LocalHub, LocalHubError
from graphtap.processing.sources.localhub import LocalHubSource


def test_round_robin_and_keyed_partitions(tmp_path: Path) -> None:
    with LocalHub(tmp_path, partitions=3) as hub:
        sent = hub.send([b"a", b"b", b"c", b"d"])
        assert [e.partition for e in sent] == [0, 1, 2, 0]
        assert [e.sequence for e in sent] == [0, 0, 0, 1]
        keyed = hub.send([b"x", b"y"], partition_key="chat-1")
        assert keyed[0].partition == keyed[1].partition
        assert keyed[1].sequence == keyed[0].sequence + 1


def test_partition_count_is_fixed_at_creation(tmp_path: Path) -> None:
    LocalHub(tmp_path, partitions=2).close()
    assert LocalHub(tmp_path).partition_count == 2
    with pytest.raises(LocalHubError, match="2 partitions"):
        LocalHub(tmp_path, partitions=4)


def test_opening_a_missing_hub_without_create_fails(tmp_path: Path) -> None:
    with pytest.raises(LocalHubError, match="no local hub"):
        LocalHub(tmp_path / "nothing", create=False)


def test_consumer_resumes_after_its_checkpoint(tmp_path: Path) -> None:
    with LocalHub(tmp_path, partitions=2) as hub:
        hub.send([str(i).encode() for i in range(10)])
    source = LocalHubSource(tmp_path, consumer_group="g")
    first = next(source.batches(3))
    assert [e.body for e in first] == [b"0", b"2", b"4"]
    source.checkpoint(first)
    source.close()

    resumed = LocalHubSource(tmp_path, consumer_group="g")
    bodies = sorted(e.body for batch in resumed.batches(100) for e in batch)
    assert bodies == sorted(str(i).encode() for i in (1, 3, 5, 6, 7, 8, 9))
    other_group = LocalHubSource(tmp_path, consumer_group="other")
    assert sum(len(b) for b in other_group.batches(100)) == 10  # groups are independent
    state = resumed.hub.partitions("g")
    assert [(p.partition, p.checkpoint, p.lag) for p in state] == [(0, 2, 2), (1, None, 5)]


def test_checkpoints_never_move_backwards(tmp_path: Path) -> None:
    with LocalHub(tmp_path, partitions=1) as hub:
        hub.send([b"a", b"b", b"c"])
        hub.checkpoint("g", 0, 2)
        hub.checkpoint("g", 0, 1)
        assert hub.checkpoint_of("g", 0) == 2


def test_appends_stay_fully_synchronous_around_checkpoints(tmp_path: Path) -> None:
    # A checkpoint may be taken back by a power loss (the sinks absorb the replay); an
    # acknowledged event may not.
    with LocalHub(tmp_path, partitions=1) as hub:
        hub.send([b"a"])
        hub.checkpoint("g", 0, 0)
        synchronous = hub._db.execute("PRAGMA synchronous").fetchone()[0]
        assert synchronous == 2  # FULL
        hub.send([b"b"])
        assert [e.body for e in hub.receive(0, after=0, max_count=5)] == [b"b"]


def _produce(directory: str, marker: int) -> None:
    with LocalHub(Path(directory)) as hub:
        for i in range(50):
            hub.send([f"{marker}-{i}".encode()], partition_key=str(marker))


def test_concurrent_producers_lose_nothing(tmp_path: Path) -> None:
    LocalHub(tmp_path, partitions=2).close()
    processes = [
        multiprocessing.Process(target=_produce, args=(str(tmp_path), m)) for m in range(4)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(30)
        assert p.exitcode == 0
    source = LocalHubSource(tmp_path)
    events = [e for batch in source.batches(1000) for e in batch]
    assert len(events) == 200
    for marker in range(4):  # per key, order is kept
        mine = [
            int(e.body.split(b"-")[1]) for e in events if e.body.startswith(f"{marker}-".encode())
        ]
        assert mine == list(range(50))


def test_following_flushes_a_partition_when_full_or_when_its_oldest_event_waited(
    tmp_path: Path,
) -> None:
    with LocalHub(tmp_path, partitions=2) as hub:
        key = {hub.partition_for(f"key-{i}"): f"key-{i}" for i in range(20)}
        hub.send([b"a", b"b", b"c", b"d"], partition_key=key[0])  # a full batch
        [late] = hub.send([b"late"], partition_key=key[1])
    source = LocalHubSource(tmp_path, follow=True, poll_interval=0.01, max_wait=3.0)
    batches = source.batches(4)
    assert [e.body for e in next(batches)] == [b"a", b"b", b"c", b"d"]  # full: at once
    assert time.time() - late.enqueued_at < 3.0
    # Not full: held until its oldest event has waited max_wait.
    assert [e.body for e in next(batches)] == [b"late"]
    assert time.time() - late.enqueued_at >= 3.0
    source.stop()
    source.close()


def test_a_drained_hub_hands_over_partial_batches_at_once(tmp_path: Path) -> None:
    with LocalHub(tmp_path, partitions=1) as hub:
        hub.send([b"a"])
    started = time.monotonic()
    source = LocalHubSource(tmp_path, max_wait=60)
    assert [[e.body for e in b] for b in source.batches(4)] == [[b"a"]]
    assert time.monotonic() - started < 30  # without follow, nothing waits out max_wait


def test_wait_settings_must_make_sense(tmp_path: Path) -> None:
    LocalHub(tmp_path, partitions=1).close()
    with pytest.raises(ValueError, match="poll interval"):
        LocalHubSource(tmp_path, follow=True, poll_interval=0)
    with pytest.raises(ValueError, match="max wait"):
        LocalHubSource(tmp_path, follow=True, max_wait=-1)
