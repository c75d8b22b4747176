"""`graphtap serve`'s app: the processor and the control plane run for the app's lifetime."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from click.testing import CliRunner

from graphtap.hosts.cli import cli
from graphtap.hosts.commands.serve import build_app
from graphtap.processing.partitions import PartitionStatus
from graphtap.processing.summary import Summary
from tests.hosts.test_webapp import ControlStatus, Subscription


class IdleService:
    mode = "test"

    def __init__(self) -> None:
        self.stopped = False

    def summary(self) -> Summary:
        return Summary(events=3)

    def partitions(self) -> list[PartitionStatus]:
        return []

    def ready(self) -> bool:
        return not self.stopped

    def failed_batches(self) -> int:
        return 2

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopped = True


class RecordingControlPlane:
    def __init__(self) -> None:
        self.running = False
        self.stopped = False

    def status(self) -> ControlStatus:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=50)
        return ControlStatus(
            (Subscription("/chats/getAllMessages", "sub-9", expires, "created", "active"),)
        )

    async def run(self, stop: asyncio.Event) -> None:
        self.running = True
        await stop.wait()
        self.stopped = True


def test_the_processor_and_control_plane_share_the_app_lifetime() -> None:
    service, plane = IdleService(), RecordingControlPlane()
    app = build_app(service, plane)

    async def scenario() -> str:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await asyncio.sleep(0)
            assert plane.running
            assert not service.stopped
            return (await client.get("/")).text

    page = asyncio.run(scenario())
    assert "failed batches (delivered again)</td><td class='n'>2<" in page
    assert "sub-9" in page
    assert "/chats/getAllMessages" in page
    assert "No control plane" not in page
    assert plane.stopped
    assert service.stopped


def test_serve_without_a_source_or_azure_settings_says_what_it_needs() -> None:
    result = CliRunner(env={"GRAPHTAP_EVENTHUB_NAMESPACE": None}).invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "--source local:DIR" in result.output


def test_serve_rejects_a_source_that_is_not_a_local_hub() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--source",
            "jsonl:x.jsonl",
            "--keys",
            ".",
            "--client-state",
            "s",
            "--sink",
            "sqlite:v.sqlite",
        ],
    )
    assert result.exit_code == 2
    assert "--source 'jsonl:x.jsonl' is not one of: local:PATH" in result.output


class BrokenService(IdleService):
    async def run(self, stop: asyncio.Event) -> None:
        raise OSError("disk full")


def test_a_processor_that_dies_fails_the_health_check() -> None:
    app = build_app(BrokenService(), None)

    async def scenario() -> tuple[int, str]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            await asyncio.sleep(0.01)
            response = await client.get("/healthz")
            return response.status_code, response.text

    assert asyncio.run(scenario()) == (503, "failed: processor")


def test_a_clean_shutdown_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    service = IdleService()
    app = build_app(service, None)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert service.stopped
    assert "background task ended" not in caplog.text
