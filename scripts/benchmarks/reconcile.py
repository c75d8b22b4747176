"""Reconciling 2,000 subscriptions against the fake Graph: the achieved write rate.

Graph allows 500 subscription writes per 20 s per app and tenant (25/s). The fake Graph
enforces exactly that on a virtual clock, and the control plane's write pacer runs on the
same clock, so the rate below is writes per simulated second: it measures the pacing
policy (and any 429 the fake had to send), not the speed of this machine. The real
seconds the run took are printed beside it, since the SDK's own work is not simulated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from graphtap.subscriptions.clock import VirtualClock
from graphtap.subscriptions.control_plane import ControlPlane
from graphtap.subscriptions.desired import parse_desired
from graphtap.subscriptions.rules import WINDOW_SECONDS, WRITES_PER_WINDOW

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fakes.graph import FakeGraph  # noqa: E402
from tests.subscriptions.conftest import (  # noqa: E402
    FakeCredential,
    bootstrapped_vault,
    deployment,
)

SUBSCRIPTIONS = 2000
CEILING = WRITES_PER_WINDOW / WINDOW_SECONDS
START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def desired(count: int) -> Any:
    users = [f"user{i:05d}@contoso.com" for i in range(count // 2)]
    return parse_desired(
        {
            "permissions": ["Chat.Read.All", "Mail.Read"],
            "lists": {"users": users},
            "subscription": [
                {"resource": "/users/{id}/chats/getAllMessages", "for_each": "users"},
                {"resource": "/users/{id}/messages", "for_each": "users", "rich": False},
            ],
        },
        environment="bench",
    )


async def measure(console: Console) -> dict[str, Any]:
    clock = VirtualClock(START)
    graph = FakeGraph(clock)
    vault = bootstrapped_vault()
    plane = ControlPlane.from_deployment(
        deployment(),
        FakeCredential(),
        desired=desired(SUBSCRIPTIONS),
        clock=clock,
        graph_transport=graph,
        keyvault_options={"transport": vault.transport()},
    )
    await plane.refresh_target()
    figures: dict[str, Any] = {}
    table = Table(
        "pass", "writes", "simulated s", "writes/s", "of 25/s", "429s", "failed", "real s"
    )
    for name in ("create", "renew", "again"):
        if name == "renew":
            # Past half of the chat subscriptions' 72 h life (mail lives 7 days: not yet due).
            clock.advance(40 * 3600)
        writes_before = sum(1 for m, *_ in graph.requests if m in ("POST", "PATCH", "DELETE"))
        rejected_before = graph.rejected_for_rate
        started, real = clock.time(), time.perf_counter()
        outcomes = await plane.reconcile()
        simulated = clock.time() - started
        real = time.perf_counter() - real
        writes = (
            sum(1 for m, *_ in graph.requests if m in ("POST", "PATCH", "DELETE")) - writes_before
        )
        failed = sum(1 for o in outcomes if o.error is not None)
        rate = writes / simulated if simulated and writes else 0.0
        rejected = graph.rejected_for_rate - rejected_before
        table.add_row(
            name,
            str(writes),
            f"{simulated:.1f}",
            f"{rate:.2f}",
            f"{rate / CEILING:.0%}" if writes else "-",
            str(rejected),
            str(failed),
            f"{real:.1f}",
        )
        figures[name] = {
            "writes": writes,
            "simulated_seconds": round(simulated, 2),
            "writes_per_second": round(rate, 2),
            "ratio_of_ceiling": round(rate / CEILING, 3) if writes else None,
            "rate_limited_429": rejected,
            "failed": failed,
            "real_seconds": round(real, 1),
        }
    console.print(table)
    console.print(
        f"{SUBSCRIPTIONS} subscriptions; Graph's ceiling {CEILING:g} writes/s "
        f"({WRITES_PER_WINDOW} per {WINDOW_SECONDS:g} s), enforced by the fake on the same "
        "virtual clock as the pacer; 'renew' PATCHes the 1,000 chat subscriptions due; "
        "'again' is the idempotent re-run; 'real s' is this machine's time for the SDK work"
    )
    figures["subscriptions"] = SUBSCRIPTIONS
    figures["ceiling_writes_per_second"] = CEILING
    return figures


def run(console: Console) -> dict[str, Any]:
    with tempfile.TemporaryDirectory():
        return asyncio.run(measure(console))
