"""The garbage collector, set for a process that runs the pipeline.

A batch allocates tens of thousands of container objects (parsed collections, decrypted
resources, results) that reference counting frees as soon as the batch is committed; none
form cycles. With CPython's default first threshold (700) the cyclic collector still runs
every few notifications, rescans the whole batch in flight and, as survivors pile up, the
whole heap. Freezing what start-up built (modules, keys, compiled detectors) and raising
the first threshold leaves the collector to the rare real cycle.
"""

from __future__ import annotations

import gc

#: Net new container objects between two collections of the youngest generation.
YOUNG_THRESHOLD = 50_000


def settle_for_throughput() -> None:
    """Collect once, move everything alive now out of the collector's sight, raise the
    first threshold. Call once the pipeline is built; calling again is harmless."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
