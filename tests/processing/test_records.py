"""Records the process pool sends arrive equal to what the pipeline built."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from graphtap.processing.pipeline import Pipeline
from graphtap.processing.records import pickled_as_fields
from tests.processing.conftest import Scenario


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_events_and_results_cross_process_boundaries_unchanged(
    pipeline: Pipeline, scenario: Scenario, protocol: int
) -> None:
    sensitive = scenario.emitter.change(scenario.tenant.post(sensitive=True), "created")
    clean = scenario.emitter.change(scenario.tenant.post(sensitive=False), "created")
    event = scenario.event(scenario.body(sensitive, clean), offset=7)
    result = pipeline.process(event)
    assert len(result.verdicts) == 2
    assert result.verdicts[0].findings  # a finding's dict crosses too
    for record in (event, result, *result.verdicts):
        sent = pickle.dumps(record, protocol=protocol)
        assert pickle.loads(sent) == record  # noqa: S301 (bytes this test made)


def test_a_single_field_record_is_refused() -> None:
    @dataclass(slots=True)
    class One:
        value: int

    with pytest.raises(TypeError, match="two or more fields"):
        pickled_as_fields(One)
