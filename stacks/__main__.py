"""`python -m stacks`: synthesize one stack per environment file into cdktf.out/.

The azurerm bindings import ~1,500 modules; collecting garbage while they load and again at
exit doubles synth time for identical output, so the collector is off for this short process.
"""

from __future__ import annotations

import gc

gc.disable()

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from stacks.config import ENVIRONMENTS_DIR, ConfigError, load_all  # noqa: E402


def main() -> int:
    # A fork can synthesize a directory of environment folders kept elsewhere.
    directory = Path(os.environ.get("GRAPHTAP_STACKS_ENVIRONMENTS", ENVIRONMENTS_DIR))
    try:
        configs = load_all(directory)
    except ConfigError as exc:
        print(f"synth stopped: invalid environment file\n{exc}", file=sys.stderr)
        return 2
    from stacks.app import synthesize

    synthesize(configs)
    gc.freeze()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
