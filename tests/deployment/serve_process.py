"""`graphtap serve` as App Service runs it, in a process of its own, against the rehearsal's
fakes: `python -m tests.deployment.serve_process serve --port N`.

The environment holds what App Service gives the site: the stack's app settings, plus where
the rehearsal serves its fakes (`tests.fakes.remote`). Everything below the command is the
production path (`serve` -> `_azure_service` -> `open_azure_host` -> uvicorn); only what
reaches the network is replaced, at the seams the in-process fakes use: the managed identity
(`DefaultAzureCredential`), the transports `open_azure_host` accepts, and the Event Hubs
clients. The control plane's loops and the secret and certificate polls run at test speed.
The rehearsal forks its instances from a server that imported this module once
(`run_instance`); each gets App Service's environment and nothing else of the test's, and
its stdout and stderr go to a file the rehearsal quotes when something fails.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from typing import Any
from unittest import mock

from graphtap.hosts import azure as azure_host
from graphtap.hosts.cli import cli
from graphtap.subscriptions.control_plane import ControlPlaneSettings
from tests.fakes.remote import RemoteFakes

#: Control-plane loops at test speed; the order of events is the production one.
FAST = ControlPlaneSettings(
    renewal_check=0.5, reconcile_interval=1.0, lifecycle_poll=0.1, rotation_check=0.2, jitter=0.1
)
#: The exit status of an instance whose rehearsal went away (EX_UNAVAILABLE).
EXIT_ORPHANED = 69
#: How often a host waiting for its secrets, or without a control plane, looks again; and how
#: soon a lifecycle event that failed is offered again, and how many failures set it aside.
POLLS: dict[str, Any] = {
    "secret_poll_seconds": 0.05,
    "certificate_check_seconds": 0.2,
    "lifecycle_options": {"visibility": 1, "max_attempts": 2},
}


def install(fakes: RemoteFakes) -> None:
    """Replace what reaches the network in this process with the rehearsal's fakes."""
    fakes.install_eventhubs()
    mock.patch("azure.identity.aio.DefaultAzureCredential", fakes.managed_identity).start()
    open_azure_host = azure_host.open_azure_host
    options_fields = {f.name for f in dataclasses.fields(azure_host.AzureServiceOptions)}

    async def open_with_fakes(
        deployment: Any, credential: Any, options: azure_host.AzureServiceOptions, **kwargs: Any
    ) -> Any:
        # Each lent transport goes where `open_azure_host` takes it: a client-options field
        # such as `keyvault_options`, or a keyword such as `graph_transport` (which
        # `open_azure_host` also puts into the options it hands on).
        lent = await fakes.seams()
        remote_options: dict[str, Any] = {
            seam: {"transport": fakes.transport(seam, kind)}
            for seam, kind in lent.items()
            if seam in options_fields and seam.endswith("_options")
        }
        keywords = {
            seam: fakes.transport(seam, kind)
            for seam, kind in lent.items()
            if seam not in remote_options
        }
        return await open_azure_host(
            deployment,
            credential,
            dataclasses.replace(options, **remote_options, **POLLS),
            **{**kwargs, "control_plane_settings": FAST, **keywords},
        )

    mock.patch.object(azure_host, "open_azure_host", open_with_fakes).start()


def main(argv: list[str]) -> None:
    fakes = RemoteFakes.from_environment()
    fakes.on_lost = _orphaned
    install(fakes)
    cli.main(argv, prog_name="graphtap")


def _orphaned() -> None:
    """The rehearsal is gone, and its fakes with it: nothing is left to serve or to shut
    down cleanly against, so the process ends at once rather than outlive the test."""
    sys.stderr.write("the rehearsal's fakes are gone: exiting\n")
    sys.stderr.flush()
    os._exit(EXIT_ORPHANED)


def run_instance(environment: Mapping[str, str], argv: list[str], log: str) -> None:
    """One instance, in a process forked from one that imported all this: `environment` as
    the whole environment, stdout and stderr into `log`, then the command."""
    os.environ.clear()
    os.environ.update(environment)
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
