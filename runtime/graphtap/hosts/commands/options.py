"""What several commands need alike: secrets from files or the environment, the policy."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click

from graphtap.notifications.model import DEFAULT_MAX_EVENT_BYTES

HASH_KEY_ENV = "GRAPHTAP_FINDING_HASH_KEY"

#: `--hash-key-file`, alike for every command that inspects.
hash_key_file_option = click.option(
    "--hash-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"File with the environment's finding hash key [env: {HASH_KEY_ENV}, hex].",
)

#: `--lifecycle-queue`, alike for every command that commits batches locally.
lifecycle_queue_option = click.option(
    "--lifecycle-queue",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file of lifecycle events for the control plane [default: beside the sink].",
)

#: `--payload-store`, alike for every command that processes notifications locally.
payload_store_option = click.option(
    "--payload-store",
    default=None,
    help="Where Graph put payloads over 1 MB: local:DIR, a folder of files named by "
    "additionalPayloadStorageId [default: none; such items are dead-lettered "
    "payload_unavailable].",
)

#: `--max-event-bytes`: `process` dead-letters larger bodies; a replay reads what it kept.
max_event_bytes_option = click.option(
    "--max-event-bytes",
    type=click.IntRange(1024),
    default=DEFAULT_MAX_EVENT_BYTES,
    show_default=True,
    help="Larger event bodies are dead-lettered as oversized (a replay: as `process` ran).",
)


def decryption_options(function: Any) -> Any:
    """`--keys`, `--key-password` and `--client-state`, alike for every command that
    decrypts notifications."""
    function = click.option(
        "--client-state",
        "client_states",
        required=True,
        multiple=True,
        envvar="GRAPHTAP_CLIENT_STATES",
        help="Accepted clientState; repeat during rotation [env: GRAPHTAP_CLIENT_STATES, "
        "space-separated].",
    )(function)
    function = click.option(
        "--key-password",
        envvar="GRAPHTAP_KEY_PASSWORD",
        help="Password of encrypted PEM or PKCS#12 keys [env: GRAPHTAP_KEY_PASSWORD].",
    )(function)
    return click.option(
        "--keys",
        "key_paths",
        required=True,
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        help="Key file or folder of them (ID.key.pem, PKCS#12); repeat for rotation.",
    )(function)


def finding_hash_key(path: Path | None) -> bytes:
    """The per-environment key findings are hashed under, so repeats can be correlated.

    From a file (raw bytes or hex) or $GRAPHTAP_FINDING_HASH_KEY (hex). Without either, a
    random key for this run only: hashes then correlate within the run and nowhere else.
    """
    if path is not None:
        raw = path.read_bytes().strip()
        try:
            key = bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            key = raw
    elif HASH_KEY_ENV in os.environ:
        try:
            key = bytes.fromhex(os.environ[HASH_KEY_ENV])
        except ValueError:
            raise click.UsageError(f"${HASH_KEY_ENV} is not hex") from None
    else:
        click.echo(
            f"note: no --hash-key-file or ${HASH_KEY_ENV}; finding hashes use a random key "
            "for this run only",
            err=True,
        )
        return secrets.token_bytes(32)
    if len(key) < 16:
        raise click.UsageError("the finding hash key must be at least 16 bytes")
    return key
