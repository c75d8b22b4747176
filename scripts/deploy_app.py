"""`make deploy-app ENV=<env>`: package runtime/ into a zip and zip-deploy it.

The zip holds what App Service and the Function App run: the `graphtap` package, the
per-environment runtime config, `function_app.py`, `host.json` and `requirements.txt`
(App Service's build installs it). Caches, build metadata, tests and anything that looks
like a key or a local secret file are left out. Names come from the stack outputs
(`.outputs/<env>.json`, saved by `make outputs`); the deploy itself is the Azure CLI's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
DIST = ROOT / "dist"

sys.path.insert(0, str(RUNTIME))

from graphtap.deployment import Deployment, DeploymentError  # noqa: E402

EXCLUDED_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests", ".venv", ".git"}
)
EXCLUDED_SUFFIXES = (
    ".pyc",
    ".pyo",
    ".pem",
    ".pfx",
    ".p12",
    ".sqlite",
    ".sqlite-wal",
    ".sqlite-shm",
    ".jsonl",
)
EXCLUDED_NAMES = frozenset({"local.settings.json", ".env", ".DS_Store"})


def included(relative: Path) -> bool:
    if any(part in EXCLUDED_DIRS or part.endswith(".egg-info") for part in relative.parts[:-1]):
        return False
    name = relative.name
    return name not in EXCLUDED_NAMES and not name.lower().endswith(EXCLUDED_SUFFIXES)


def package_files(runtime: Path) -> Iterator[Path]:
    for path in sorted(runtime.rglob("*")):
        if path.is_file() and included(path.relative_to(runtime)):
            yield path


def package(runtime: Path, out: Path) -> list[str]:
    """Write the zip; return the archive names in it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in package_files(runtime):
            name = path.relative_to(runtime).as_posix()
            archive.write(path, name)
            names.append(name)
    for required in ("graphtap/__init__.py", "function_app.py", "host.json", "requirements.txt"):
        if required not in names:
            raise SystemExit(f"{runtime}: {required} is missing; refusing to deploy a broken app")
    return names


def deploy_commands(deployment: Deployment, archive: Path) -> list[list[str]]:
    """The Azure CLI calls that zip-deploy the web app (and the function app, when there is one)."""
    if not deployment.resource_group or not deployment.web_app_name:
        raise DeploymentError("stack outputs lack resource_group or web_app_name")
    commands = [
        [
            "az",
            "webapp",
            "deploy",
            "--resource-group",
            deployment.resource_group,
            "--name",
            deployment.web_app_name,
            "--src-path",
            str(archive),
            "--type",
            "zip",
            "--async",
            "false",
        ]
    ]
    if deployment.function_app_name:
        commands.append(
            [
                "az",
                "functionapp",
                "deployment",
                "source",
                "config-zip",
                "--resource-group",
                deployment.resource_group,
                "--name",
                deployment.function_app_name,
                "--src",
                str(archive),
                "--build-remote",
                "true",
            ]
        )
    if deployment.subscription_id:
        for command in commands:
            command += ["--subscription", deployment.subscription_id]
    return commands


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: deploy_app.py ENV", file=sys.stderr)
        return 2
    environment = argv[0]
    try:
        deployment = Deployment.load(environment, directory=ROOT / ".outputs")
    except DeploymentError as exc:
        print(f"deploy-app: {exc}", file=sys.stderr)
        return 1
    archive = DIST / f"graphtap-runtime-{environment}.zip"
    names = package(RUNTIME, archive)
    print(f"packaged {len(names)} files into {archive}")
    if shutil.which("az") is None:
        print(
            "deploy-app: the Azure CLI (az) is not installed; the package is ready", file=sys.stderr
        )
        return 1
    for command in deploy_commands(deployment, archive):
        print("+", " ".join(command))
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
