"""The sizing rules behind the README's table, on round figures."""

from __future__ import annotations

from scripts.benchmarks.eventhubs import sizing_markdown, sizing_row


def test_throughput_units_follow_the_larger_of_bytes_and_events() -> None:
    # 1,000/s of 500-byte notifications and 500-byte verdicts: 1 MB/s but 2,000 events/s in.
    row = sizing_row(1_000, 5_000.0, 500.0, 500.0)
    assert row["throughput_units"] == 2
    # 1,000/s of 3,000-byte notifications and 1,000-byte verdicts: 4 MB/s in.
    assert sizing_row(1_000, 5_000.0, 3_000.0, 1_000.0)["throughput_units"] == 4


def test_instances_leave_headroom_and_partitions_cover_instances() -> None:
    row = sizing_row(6_000, 1_000.0, 2_000.0, 700.0)
    assert row["instances"] == 10  # 6,000 / (1,000 x 0.6)
    assert row["partitions"] >= row["instances"]
    assert row["partitions"] >= 12  # 12 MB/s of notifications at about 1 MB/s each


def test_beyond_standard_the_table_says_so() -> None:
    row = sizing_row(50_000, 2_000.0, 2_500.0, 700.0)
    assert row["tier"] == "Premium/Dedicated"
    assert sizing_row(500, 2_000.0, 2_500.0, 700.0)["tier"] == "Standard"


def test_markdown_table_has_one_row_per_target() -> None:
    rows = [sizing_row(t, 1_800.0, 2_470.0, 703.0) for t in (500, 2_000)]
    table = sizing_markdown({"sizing": rows}).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| 500 | 2 | Standard |")
