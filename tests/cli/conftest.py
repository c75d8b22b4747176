from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GRAPHTAP = Path(sys.executable).with_name("graphtap")


def graphtap(
    *args: str | Path, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `graphtap` command as a user would."""
    result = subprocess.run(
        [str(GRAPHTAP), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"graphtap {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def cli_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli-keys")
    graphtap("keys", "create", "--out", directory, "--id", "cli-cert")
    return directory


def simulate(
    cli_keys: Path, client_state: str, count: int, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    """`graphtap simulate` encrypting to the session's `cli-cert`, with `args` (the output
    and any other option) after the common ones."""
    return graphtap(
        "simulate",
        "--cert",
        cli_keys / "cli-cert.cert.pem",
        "--cert-id",
        "cli-cert",
        "--client-state",
        client_state,
        "--count",
        str(count),
        *args,
    )
