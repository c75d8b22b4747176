"""The runner: every notification ends with exactly one verdict, and checkpoints follow the sink."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from graphtap.localhub import DEFAULT_CONSUMER_GROUP, LocalHub
from graphtap.processing.heap import YOUNG_THRESHOLD
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.pipeline import PipelineSettings
from graphtap.processing.runner import Processor, ProcessorOptions, load_pipeline
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.processing.sources.localhub import LocalHubSource
from graphtap.processing.summary import Summary
from graphtap.processing.verdicts import Verdict
from graphtap.simulation.emitter import SimulationSettings, simulate
from graphtap.subscriptions.certificates import CertificateFiles, load_certificate

from .conftest import CLIENT_STATE


def _fill_hub(
    directory: Path, cert: CertificateFiles, count: int, **options: float
) -> dict[str, int]:
    events = list(
        simulate(
            SimulationSettings(count=count, seed=3, **options),  # type: ignore[arg-type]
            certificate=load_certificate(cert.certificate_path),
            certificate_id=cert.certificate_id,
            client_state=CLIENT_STATE,
        )
    )
    with LocalHub(directory, partitions=3) as hub:
        hub.send([e.body for e in events])
    return {
        "changes": sum(e.changes for e in events),
        "faults": sum(len(e.faults) for e in events),
        "lifecycle": sum(e.lifecycle for e in events),
        "validation": sum(e.validation for e in events),
        "events": len(events),
    }


def _run(
    hub_dir: Path,
    store: SqliteStore,
    settings: PipelineSettings,
    *,
    workers: int = 1,
    batch_size: int = 64,
) -> Summary:
    source = LocalHubSource(hub_dir)
    lifecycle = LifecycleQueue(hub_dir / "lifecycle.sqlite")
    try:
        return Processor(
            source=source,
            sink=store,
            dead_letters=store,
            lifecycle=lifecycle,
            settings=settings,
            options=ProcessorOptions(workers=workers, batch_size=batch_size),
        ).run()
    finally:
        source.close()
        lifecycle.close()


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608


@pytest.mark.parametrize("workers", [1, 2])
def test_every_notification_gets_one_verdict_and_faults_are_dead_lettered(
    tmp_path: Path, cert_a: CertificateFiles, pipeline_settings: PipelineSettings, workers: int
) -> None:
    expected = _fill_hub(tmp_path / "hub", cert_a, 400, fault_share=0.05, lifecycle_share=0.02)
    store = SqliteStore(tmp_path / "verdicts.sqlite")
    summary = _run(tmp_path / "hub", store, pipeline_settings, workers=workers)
    assert summary.events == expected["events"]
    assert summary.verdicts == expected["changes"]
    assert summary.dead_letters == expected["faults"] > 0
    assert summary.validation_skipped == expected["validation"] == 2
    assert summary.lifecycle_queued == expected["lifecycle"] > 0
    assert sum(summary.findings_by_type.values()) > 0
    assert _count(tmp_path / "verdicts.sqlite", "verdicts") == expected["changes"]
    with LocalHub(tmp_path / "hub") as hub:
        assert all(p.lag == 0 for p in hub.partitions(DEFAULT_CONSUMER_GROUP))


def test_a_replay_from_the_start_adds_nothing(
    tmp_path: Path, cert_a: CertificateFiles, pipeline_settings: PipelineSettings
) -> None:
    expected = _fill_hub(tmp_path / "hub", cert_a, 200, fault_share=0.05)
    store = SqliteStore(tmp_path / "verdicts.sqlite")
    _run(tmp_path / "hub", store, pipeline_settings)
    source = LocalHubSource(tmp_path / "hub", consumer_group="replay")
    lifecycle = LifecycleQueue(tmp_path / "hub" / "lifecycle.sqlite")
    replay = Processor(
        source=source,
        sink=store,
        dead_letters=store,
        lifecycle=lifecycle,
        settings=pipeline_settings,
    ).run()
    assert replay.verdicts == 0
    assert replay.duplicate_verdicts == expected["changes"]
    assert _count(tmp_path / "verdicts.sqlite", "verdicts") == expected["changes"]
    assert _count(tmp_path / "verdicts.sqlite", "dead_letters") == expected["faults"]


class FlakySink(SqliteStore):
    """Accepts `budget` batches, then fails like a sink outage."""

    def __init__(self, path: Path, budget: int) -> None:
        super().__init__(path)
        self.budget = budget

    def write_verdicts(self, verdicts: Sequence[Verdict]) -> int:
        if self.budget == 0:
            raise ConnectionError("sink unavailable")
        self.budget -= 1
        return super().write_verdicts(verdicts)


def test_a_sink_outage_stops_the_checkpoint_not_the_verdicts(
    tmp_path: Path, cert_a: CertificateFiles, pipeline_settings: PipelineSettings
) -> None:
    expected = _fill_hub(tmp_path / "hub", cert_a, 300)
    flaky = FlakySink(tmp_path / "verdicts.sqlite", budget=2)
    with pytest.raises(ConnectionError):
        _run(tmp_path / "hub", flaky, pipeline_settings, batch_size=20)
    with LocalHub(tmp_path / "hub") as hub:
        checkpointed = sum(
            (p.checkpoint + 1)
            for p in hub.partitions(DEFAULT_CONSUMER_GROUP)
            if p.checkpoint is not None
        )
    assert checkpointed == 40  # exactly the two accepted batches
    flaky.close()
    summary = _run(tmp_path / "hub", SqliteStore(tmp_path / "verdicts.sqlite"), pipeline_settings)
    assert summary.events == expected["events"] - 40
    assert _count(tmp_path / "verdicts.sqlite", "verdicts") == expected["changes"]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        ProcessorOptions(workers=0)
    with pytest.raises(ValueError, match="batch"):
        ProcessorOptions(batch_size=0)


def test_a_pipeline_process_leaves_the_collector_to_real_cycles(
    pipeline_settings: PipelineSettings,
) -> None:
    threshold = gc.get_threshold()
    try:
        load_pipeline(pipeline_settings)
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0  # what start-up built is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
