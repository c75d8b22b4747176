"""`graphtap serve` on the local hub, as a real process probed over HTTP."""

from __future__ import annotations

import json
import signal
import sqlite3

from prometheus_client.parser import text_string_to_metric_families

from tests.hosts.conftest import Server


def test_serve_processes_the_hub_and_reports_it(server: Server) -> None:
    assert server.get("/healthz") == (200, "ok")
    assert server.get("/readyz") == (200, "ready")
    status = server.wait_until_drained()
    summary = status["summary"]
    assert isinstance(summary, dict)
    assert summary["verdicts"] > 0
    assert summary["dead_letters_by_reason"]  # the faulty events, each with its reason
    assert status["subscriptions"] is None  # the local hub has no control plane
    partitions = status["partitions"]
    assert isinstance(partitions, list)
    assert [p["partition"] for p in partitions] == ["0", "1", "2", "3"]
    later = server.status()["partitions"]
    assert isinstance(later, list)
    assert all(p["lag"] == 0 for p in later)
    with sqlite3.connect(server.workdir / "verdicts.sqlite") as db:
        (stored,) = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
    assert stored == summary["verdicts"]


def test_metrics_endpoint_serves_prometheus_text(server: Server) -> None:
    server.wait_until_drained()
    code, text = server.get("/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["graphtap_events"].samples[0].value == server.events
    assert families["graphtap_findings"].samples  # the simulated tenant leaks secrets
    assert {s.labels["partition"] for s in families["graphtap_partition_lag"].samples} == {
        "0",
        "1",
        "2",
        "3",
    }


def test_status_page_has_every_section(server: Server) -> None:
    server.wait_until_drained()
    code, page = server.get("/")
    assert code == 200
    for section in ("subscriptions", "partitions", "findings", "dead-letters"):
        assert f"<section id='{section}'>" in page
    assert "No control plane is configured" in page


def test_logs_are_json_lines_without_secrets(server: Server) -> None:
    server.wait_until_drained()
    assert server.client_state not in " ".join(map(str, server.process.args))  # type: ignore[arg-type]
    text = server.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line["message"] == "processing the local hub" for line in lines), text
    assert server.client_state not in text


def test_sigterm_stops_after_the_batch_in_hand(own_server: Server) -> None:
    server = own_server
    server.wait_until_drained()
    server.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    stopped = [
        json.loads(line)
        for line in server.log.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["message"] == "processor stopped"
    ]
    assert stopped == [stopped[0]]
    assert stopped[0]["events"] == server.events
