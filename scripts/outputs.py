"""`make outputs ENV=<env>`: save a deployed stack's outputs where `make bootstrap` finds them.

Reads `terraform output -json` in the stack's synthesized directory (initialized by
`cdktf deploy <env>`), or a file given with `--from` (`cdktf output <env> --outputs-file` or
`terraform output -json` saved earlier), and writes the flat object `.outputs/<env>.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))

from graphtap.deployment import Deployment  # noqa: E402

#: One output per field of `Deployment`: the stack writes exactly these.
KEYS = Deployment.field_names()
# Terraform does not keep outputs whose value is null: these are absent when not deployed.
OPTIONAL = frozenset(
    {
        "function_app_name",
        "logs_ingestion_endpoint",
        "logs_dcr_id",
        "logs_stream",
        "payload_account_url",
        "payload_account",
        "payload_secret",
    }
)


class OutputsError(Exception):
    pass


def flatten(raw: dict[str, Any], environment: str) -> dict[str, Any]:
    """The contract object from either `terraform output -json` or a cdktf outputs file."""
    if (
        environment in raw
        and isinstance(raw[environment], dict)
        and "value" not in raw[environment]
    ):
        values = dict(raw[environment])  # cdktf outputs file: {"<stack>": {"name": value}}
    else:
        values = {}
        for name, entry in raw.items():
            if not isinstance(entry, dict) or "value" not in entry:
                raise OutputsError(f"output {name!r} is not in `terraform output -json` form")
            if entry.get("sensitive"):
                raise OutputsError(f"output {name!r} is sensitive; the stack exports none")
            values[name] = entry["value"]
    missing = [key for key in KEYS if key not in values and key not in OPTIONAL]
    if missing:
        raise OutputsError(f"the stack outputs lack {', '.join(missing)}: is the stack deployed?")
    if values["environment"] != environment:
        raise OutputsError(f"these outputs are of {values['environment']!r}, not {environment!r}")
    return {key: values.get(key) for key in KEYS}


def read_deployed(environment: str) -> dict[str, Any]:
    stack_dir = ROOT / "cdktf.out" / "stacks" / environment
    if not (stack_dir / ".terraform").is_dir():
        raise OutputsError(
            f"{stack_dir} is not initialized: run `cdktf deploy {environment}` first, or pass "
            "--from with a saved outputs file"
        )
    result = subprocess.run(
        ["terraform", "output", "-json"], cwd=stack_dir, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise OutputsError(f"terraform output failed in {stack_dir}:\n{result.stderr.strip()}")
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment")
    parser.add_argument("--from", dest="source", type=Path, help="a saved outputs file")
    parser.add_argument("--out-dir", type=Path, default=ROOT / ".outputs")
    args = parser.parse_args(argv)
    try:
        raw = (
            json.loads(args.source.read_text()) if args.source else read_deployed(args.environment)
        )
        outputs = flatten(raw, args.environment)
    except (OutputsError, OSError, json.JSONDecodeError) as exc:
        print(f"outputs: {exc}", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    target = args.out_dir / f"{args.environment}.json"
    target.write_text(json.dumps(outputs, indent=2) + "\n")
    print(f"outputs of {args.environment} written to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
