"""App Service instances of the web app, for the rehearsal: each runs `graphtap serve` in a
process of its own (`tests.deployment.serve_process`) and is reached over loopback HTTP.

An instance gets what App Service gives a site: the stack's app settings as its environment
(and no other variable of the test's), its own state folder and port; plus where the
rehearsal serves its fakes. Its processes are forked from a server that has imported the
command once, so an instance starts in milliseconds rather than in an interpreter's
start-up. What it logs goes to a file, whose tail a failure quotes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx

from tests.deployment.serve_process import run_instance

#: What a process needs from the test's environment to run Python at all.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
ROOT = Path(__file__).resolve().parents[2]
TAIL_LINES = 30
#: Instances fork from one server that imported the command (once per test session).
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["tests.deployment.serve_process"])


class HostFailed(RuntimeError):
    """An instance exited, or did not come up, when the rehearsal needed it."""


@dataclass
class ServeInstance:
    name: str
    process: BaseProcess
    log: Path
    client: httpx.AsyncClient

    @classmethod
    def start(
        cls, name: str, settings: Mapping[str, str], fakes: Mapping[str, str], state: Path
    ) -> ServeInstance:
        """Start `graphtap serve` with `settings` as its environment, reaching the fakes."""
        state.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        environment = {
            **{k: os.environ[k] for k in INHERITED if k in os.environ},
            "GRAPHTAP_LOG_LEVEL": "INFO",
            "GRAPHTAP_STATE_DIR": str(state / name),
            **settings,
            **fakes,
        }
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port), "--batch-size", "64"]
        log = state / f"{name}.log"
        process = _FORKS.Process(target=run_instance, args=(environment, argv, str(log)), name=name)
        process.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
        return cls(name, process, log, client)

    @property
    def exited(self) -> bool:
        return self.process.exitcode is not None

    def failure(self, what: str) -> HostFailed:
        return HostFailed(f"{self.name} {what} (exit code {self.process.exitcode}){self.tail()}")

    async def ready(self, timeout: float = 30) -> None:
        """Wait until App Service's health check would pass: /healthz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited:
                raise self.failure("exited before serving")
            try:
                if (await self.client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet: it opens its port once its service is open
            await asyncio.sleep(0.05)
        raise self.failure(f"did not answer /healthz within {timeout:g}s")

    async def stop(self, timeout: float = 15) -> None:
        """What App Service does to stop an instance: SIGTERM, then SIGKILL after `timeout`.
        The event loop keeps running meanwhile: a stopping instance still calls the fakes."""
        await self.client.aclose()
        if not self.exited:
            self.process.terminate()
            deadline = time.monotonic() + timeout
            while not self.exited and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if not self.exited:
            self.process.kill()
        self.process.join()

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError as error:
            return f"\n--- {self.name}: no log ({error})"
        return f"\n--- last {len(text)} lines of {self.name}'s log:\n" + "\n".join(text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
