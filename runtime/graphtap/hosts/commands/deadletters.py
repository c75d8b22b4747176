"""`graphtap deadletters list | show | replay`: what could not become a verdict, and a second try.

A store is read where the processor wrote it: `sqlite:FILE`, `jsonl:FILE` or the Blob
container. Nothing printed holds a secret or message content: kept bodies have their
clientState masked, and `show` prints an item's routing fields, never its encrypted content.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from graphtap.hosts.commands.options import (
    HASH_KEY_ENV,
    decryption_options,
    finding_hash_key,
    hash_key_file_option,
    lifecycle_queue_option,
    max_event_bytes_option,
)
from graphtap.hosts.findings import parse_since
from graphtap.inspection import Policy, load_policy
from graphtap.notifications.errors import Reason
from graphtap.notifications.keyring import KeyRingError
from graphtap.processing import compose
from graphtap.processing.committer import BlockingDeadLetters, BlockingVerdicts
from graphtap.processing.deadletters import parse_ranges
from graphtap.processing.endpoints import (
    SINK_SCHEMES,
    Endpoint,
    EndpointError,
    default_lifecycle_queue,
    open_stores,
)
from graphtap.processing.fetch.payloads import parse_payload_store
from graphtap.processing.lifecycle import LifecycleQueue
from graphtap.processing.outbox import ActionOutbox
from graphtap.processing.replay import (
    DeadLetterReader,
    DeadLetterStoreError,
    LetterFilter,
    ReplayReport,
    StoredLetter,
    StoreName,
    open_reader,
    replay,
)
from graphtap.processing.sinks import AsyncDeadLetterStore, VerdictSink
from graphtap.processing.sinks.jsonl import JsonlVerdictSink
from graphtap.processing.sinks.sqlite import SqliteStore
from graphtap.transactions import StoreError

DEFAULT_STORE = "sqlite:verdicts.sqlite"
#: Fields of an item `show` prints: where it came from, never what it carries.
ROUTING_FIELDS = (
    "subscriptionId",
    "changeType",
    "resource",
    "tenantId",
    "lifecycleEvent",
    "subscriptionExpirationDateTime",
)

T = TypeVar("T")

store_option = click.option(
    "--store",
    default=DEFAULT_STORE,
    show_default=True,
    help="Where the dead letters are: sqlite:FILE, jsonl:FILE or "
    "blob:https://ACCOUNT.blob.core.windows.net/CONTAINER (signed in with "
    "DefaultAzureCredential).",
)
since_option = click.option(
    "--since", default=None, help="ISO time (UTC unless it says) or a duration: 30m, 1h, 7d."
)


def _store(text: str) -> StoreName:
    try:
        return StoreName.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--store") from None


def _since(text: str | None) -> float | None:
    try:
        return parse_since(text) if text is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _credential() -> Any:
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


def _with_reader(store: StoreName, use: Callable[[DeadLetterReader], Awaitable[T]]) -> T:
    """Run `use` with the store's reader open, and close the reader (and credential)."""

    async def run() -> T:
        credential = _credential() if store.kind == "blob" else None
        try:
            options = {"credential": credential} if credential is not None else {}
            reader = open_reader(store, **options)
            try:
                return await use(reader)
            finally:
                await reader.close()
        finally:
            if credential is not None:
                await credential.close()

    try:
        return asyncio.run(run())
    except (DeadLetterStoreError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return f"{dt.datetime.fromtimestamp(epoch, dt.UTC):%Y-%m-%d %H:%M:%S}"


@click.group()
def deadletters() -> None:
    """Dead letters: list them, show one, replay them once their cause is fixed."""


@deadletters.command("list")
@store_option
@click.option("--reason", default=None, help="Only this reason code, e.g. unknown_certificate.")
@since_option
@click.option("--pending", is_flag=True, help="Hide the letters a replay already fixed.")
def list_letters(store: str, reason: str | None, since: str | None, pending: bool) -> None:
    """List dead letters, oldest first, with whether a replay fixed them."""
    name = _store(store)
    where = LetterFilter(reason=reason, since=_since(since), include_replayed=not pending)
    letters = _with_reader(name, lambda reader: reader.letters(where))
    console = Console()
    if not letters:
        console.print(f"No dead letters in {name} match.", markup=False)
        return
    table = Table(title=f"dead letters in {name}", box=box.SIMPLE_HEAD)
    table.add_column("key", no_wrap=True)
    table.add_column("reason", no_wrap=True, min_width=len(Reason.UNKNOWN_CERTIFICATE))
    table.add_column("items", justify="right", overflow="fold", min_width=5)
    table.add_column("when (UTC)", overflow="fold", min_width=10)
    table.add_column("partition/offset", overflow="fold", min_width=9)
    table.add_column("replayed", no_wrap=True, min_width=8)
    for letter in letters:
        cells = (
            short_key(letter),
            letter.reason,
            letter.items if letter.items is not None else "event",
            _when(letter.occurred_at),
            f"{letter.partition}/{letter.offset}",
            "-" if letter.replayed_at is None else "yes",
        )
        table.add_row(*(Text(cell) for cell in cells))  # as text: stored strings are no markup
    console.print(table)


def short_key(letter: StoredLetter) -> str:
    """The letter's event hash cut to 12 digits: `show` takes it (with `:reason` when an
    event has letters of several reasons)."""
    return letter.event_key[:12]


async def find_letter(reader: DeadLetterReader, key: str) -> StoredLetter | None:
    """The letter with this key, or the one letter its short form (a prefix of the event's
    hash, then `:reason`) names."""
    exact = await reader.letter(key)
    if exact is not None:
        return exact
    prefix, _, reason = key.partition(":")
    if len(prefix) < 8:
        return None
    found = [
        letter
        for letter in await reader.letters(LetterFilter(reason=reason or None))
        if letter.event_key.startswith(prefix)
    ]
    if len(found) > 1:
        raise click.ClickException(f"{key} names {len(found)} dead letters; give more of it")
    return found[0] if found else None


@deadletters.command("show")
@store_option
@click.argument("key")
def show(store: str, key: str) -> None:
    """A dead letter's fields and message, and the routing fields of the items it names.

    KEY is the letter's key, or the key `list` prints (with `:REASON` if several match)."""
    name = _store(store)

    async def fetch(reader: DeadLetterReader) -> tuple[StoredLetter | None, Any]:
        letter = await find_letter(reader, key)
        return letter, None if letter is None else await reader.event(letter.event_key)

    letter, event = _with_reader(name, fetch)
    if letter is None:
        raise click.ClickException(f"no dead letter {key} in {name}")
    table = Table(title=f"dead letter {letter.key}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("reason", letter.reason),
        ("message", letter.message),
        ("items", letter.items if letter.items is not None else "the whole event"),
        ("item count", str(letter.item_count)),
        ("when (UTC)", _when(letter.occurred_at)),
        ("partition/offset", f"{letter.partition}/{letter.offset}"),
        ("event key", letter.event_key),
        ("replayed (UTC)", _when(letter.replayed_at)),
    ]
    if event is None:
        rows.append(("event body", "not in the store"))
    else:
        kept = "a prefix" if event.truncated else "whole"
        beside = f", {len(event.payloads)} payload(s) kept beside it" if event.payloads else ""
        rows.append(("event body", f"{event.size} bytes, {kept}, clientState masked{beside}"))
        rows += _item_rows(event.body, letter.items, payloads=event.payloads or {})
    for field, value in rows:
        table.add_row(Text(field), Text(value))
    Console().print(table)


def _item_rows(
    body: str, items: str | None, *, payloads: dict[int, dict[str, Any]], limit: int = 5
) -> list[tuple[str, str]]:
    """Routing fields of the first items a letter names, with what a payload kept beside
    the body adds to its item (never encrypted content)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [("event body", "not JSON")]
    values = document.get("value") if isinstance(document, dict) else None
    if not isinstance(values, list):
        return []
    if items is None:
        indexes: Iterable[int] = range(min(limit, len(values)))
    else:  # the first few, however wide the ranges
        spread = (i for first, last in parse_ranges(items) for i in range(first, last + 1))
        indexes = itertools.islice(spread, limit)
    rows = []
    for index in indexes:
        item = values[index] if 0 <= index < len(values) else None
        if not isinstance(item, dict):
            continue
        item = {**item, **payloads.get(index, {})}
        data = item.get("resourceData")
        fields = {f: item[f] for f in ROUTING_FIELDS if isinstance(item.get(f), str)}
        encrypted = item.get("encryptedContent")
        certificate = (
            encrypted.get("encryptionCertificateId") if isinstance(encrypted, dict) else None
        )
        if isinstance(certificate, str):
            fields["encryptionCertificateId"] = certificate
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            fields["resourceData.id"] = data["id"]
        rows.append((f"value[{index}]", ", ".join(f"{k}={v}" for k, v in fields.items())))
    return rows


@deadletters.command("replay")
@store_option
@click.option("--reason", required=True, help="The reason code whose letters to replay.")
@since_option
@click.option("--again", is_flag=True, help="Also replay letters a replay already fixed.")
@decryption_options
@click.option("--sink", required=True, help="The verdict store: sqlite:FILE or jsonl:FILE.")
@click.option(
    "--dead-letter",
    default=None,
    help="Where letters that fail again go: jsonl:FILE or sqlite:FILE [default: --store].",
)
@lifecycle_queue_option
@click.option(
    "--payload-store",
    default=None,
    help="Where Graph put payloads over 1 MB: local:DIR, or "
    "blob:https://ACCOUNT.blob.core.windows.net (Graph's container there, signed in with "
    "DefaultAzureCredential) [default: none].",
)
@click.option(
    "--graph-endpoint",
    envvar="GRAPHTAP_GRAPH_ENDPOINT",
    default=None,
    help="Read Outlook messages again from this Graph (e.g. https://graph.microsoft.com), "
    "signed in with DefaultAzureCredential: on the web app, the runtime identity, which holds "
    "Mail.Read [default: $GRAPHTAP_GRAPH_ENDPOINT, which the stack sets there].",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Inspection policy TOML [default: report every finding at 65 or above].",
)
@max_event_bytes_option
@hash_key_file_option
def replay_letters(
    store: str,
    reason: str,
    since: str | None,
    again: bool,
    key_paths: tuple[Path, ...],
    key_password: str | None,
    client_states: tuple[str, ...],
    sink: str,
    dead_letter: str | None,
    lifecycle_queue: Path | None,
    payload_store: str | None,
    graph_endpoint: str | None,
    policy_path: Path | None,
    max_event_bytes: int,
    hash_key_file: Path | None,
) -> None:
    """Replay the dead letters of a reason through the pipeline into the sink.

    Verdict keys make a replay idempotent; letters that no longer fail are marked replayed,
    those that fail again are reported (exit 1) and stay unmarked, under the same key."""
    name = _store(store)
    where = LetterFilter(reason=reason, since=_since(since), include_replayed=again)
    try:
        sink_endpoint = Endpoint.parse(sink, allowed=SINK_SCHEMES, what="--sink")
        letters_endpoint = (
            Endpoint.parse(dead_letter, allowed=SINK_SCHEMES, what="--dead-letter")
            if dead_letter is not None
            else None
        )
    except EndpointError as exc:
        raise click.UsageError(str(exc)) from None
    if letters_endpoint is None and name.kind != "blob":
        letters_endpoint = Endpoint(name.kind, Path(name.location))
    if hash_key_file is None and HASH_KEY_ENV not in os.environ:
        raise click.UsageError(
            f"give the finding hash key the letters were written under (--hash-key-file or "
            f"${HASH_KEY_ENV}): the kept bodies' clientState is masked under it"
        )
    try:
        settings = compose.pipeline_settings(
            key_paths=key_paths,
            client_states=client_states,
            hash_key=finding_hash_key(hash_key_file),
            policy=load_policy(policy_path) if policy_path else Policy.default(),
            key_password=key_password.encode() if key_password else None,
            max_event_bytes=max_event_bytes,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    if reason == str(Reason.FETCH_FAILED) and not graph_endpoint:
        raise click.UsageError(
            "fetch_failed letters are Outlook messages to read again from Graph: give "
            "--graph-endpoint (set on the web app as $GRAPHTAP_GRAPH_ENDPOINT), and run where "
            "the runtime identity signs in"
        )
    if payload_store is not None:
        try:  # a bad spec is refused before anything is read
            parse_payload_store(payload_store)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--payload-store") from None

    async def run(reader: DeadLetterReader) -> ReplayReport:
        letters = await reader.letters(where)
        failed_again: AsyncDeadLetterStore
        verdicts: VerdictSink
        if letters_endpoint is not None:
            stores = open_stores(sink_endpoint, letters_endpoint)
            verdicts, failed_again = stores.sink, BlockingDeadLetters(stores.dead_letters)
            close_stores = stores.close
        else:  # a Blob store: letters that fail again go back there
            from graphtap.processing.sinks.blob import BlobDeadLetters

            verdicts = (
                SqliteStore(sink_endpoint.path)
                if sink_endpoint.scheme == "sqlite"
                else JsonlVerdictSink(sink_endpoint.path)
            )
            failed_again = BlobDeadLetters(
                name.account_url, name.container, credential=_credential()
            )
            close_stores = verdicts.close
        try:
            lifecycle = LifecycleQueue(lifecycle_queue or default_lifecycle_queue(sink_endpoint))
        except BaseException:
            close_stores()
            raise
        try:
            outbox = ActionOutbox(lifecycle.path)  # actions a replay enforces, as `process`
        except BaseException:
            close_stores()
            lifecycle.close()
            raise
        credential = None
        fetcher = None
        try:
            if payload_store and payload_store.startswith("blob:"):
                credential = _credential()
            fetcher = compose.payload_fetcher(settings, payload_store, credential=credential)
            if graph_endpoint:  # Outlook messages, read with the runtime identity's Mail.Read
                from graphtap.hosts.azure import open_mail

                credential = credential or _credential()
                mail = open_mail(credential, graph_endpoint)
                fetcher = (
                    compose.content_fetcher(settings, mail=mail)
                    if fetcher is None
                    else replace(fetcher, mail=mail)
                )
            return await replay(
                reader,
                letters,
                settings=settings,
                sink=BlockingVerdicts(verdicts),
                dead_letters=failed_again,
                lifecycle=lifecycle,
                outbox=outbox,
                fetcher=fetcher,
            )
        finally:
            if fetcher is not None:
                await fetcher.close()
            if credential is not None:
                await credential.close()
            if letters_endpoint is None:
                await failed_again.close()
            close_stores()
            lifecycle.close()
            outbox.close()

    try:
        report = _with_reader(name, run)
    except KeyRingError as exc:
        raise click.ClickException(str(exc)) from None
    _print_report(report, name)
    if report.still_failing:
        raise SystemExit(1)


def _print_report(report: ReplayReport, store: StoreName) -> None:
    console = Console()
    console.print(
        f"Replayed {report.events} event(s) from {store}: {report.new_verdicts} new verdict(s), "
        f"{len(report.replayed)} letter(s) fixed and marked, "
        f"{len(report.still_failing)} still failing.",
        markup=False,
    )
    if report.still_failing:
        table = Table(title="still failing (not marked; replay again once fixed)")
        table.add_column("key", overflow="fold")
        table.add_column("reason")
        table.add_column("why", overflow="fold")
        for letter, why in report.still_failing:
            table.add_row(Text(letter.key), Text(letter.reason), Text(why))
        console.print(table)
