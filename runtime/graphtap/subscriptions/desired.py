"""Desired subscriptions, declared per environment and checked against Graph's rules first.

`runtime/environments/<env>/subscriptions.toml` lists what should exist; every rule is
checked before any call to Graph, and every violation is reported at once, naming the rule
(`[max-lifetime]`, `[lifecycle-url]`, `[read-only-permissions]`, ...).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphtap.subscriptions.rules import (
    CHANGE_TYPES,
    MIN_LIFETIME_MINUTES,
    TEAMS_LIFECYCLE_THRESHOLD_MINUTES,
    ResourceRule,
    is_write_permission,
    rule_for,
)

ENVIRONMENTS_DIR = Path(__file__).resolve().parents[2] / "environments"
DEFAULT_RENEW_AT = 0.5


class DesiredStateError(ValueError):
    """The declaration breaks one or more of Graph's rules; the message lists each one."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{source}:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class DesiredSubscription:
    """One subscription as it should exist in Graph."""

    resource: str
    change_types: tuple[str, ...]
    rich: bool
    lifetime: dt.timedelta
    lifecycle: bool = True

    @property
    def change_type(self) -> str:
        """Graph's comma-joined `changeType`."""
        return ",".join(self.change_types)

    @property
    def key(self) -> tuple[str, str]:
        """What Graph treats as one subscription: a second one with the same key is a 409."""
        return (self.resource.lower(), ",".join(sorted(self.change_types)))

    @property
    def rule(self) -> ResourceRule:
        rule = rule_for(self.resource)
        if rule is None:
            raise ValueError(f"{self.resource}: no Graph rule covers this resource")
        return rule


@dataclass(frozen=True, slots=True)
class DesiredState:
    environment: str
    subscriptions: tuple[DesiredSubscription, ...]
    permissions: tuple[str, ...]
    renew_at: float = DEFAULT_RENEW_AT
    #: Every resource as declared, `{id}` unexpanded: what the environment subscribes to
    #: whatever its lists hold today (the stack grants for these, not for the lists).
    declared: tuple[str, ...] = ()

    def by_key(self) -> dict[tuple[str, str], DesiredSubscription]:
        return {s.key: s for s in self.subscriptions}


def load_desired(
    environment: str, *, directory: Path = ENVIRONMENTS_DIR, path: Path | None = None
) -> DesiredState:
    """Read and validate `<directory>/<environment>/subscriptions.toml`."""
    path = path or directory / environment / "subscriptions.toml"
    if not path.exists():
        raise DesiredStateError(str(path), ["file not found: declare the subscriptions here"])
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DesiredStateError(str(path), [f"not valid TOML: {exc}"]) from None
    return parse_desired(document, environment=environment, source=str(path))


def parse_desired(
    document: Mapping[str, Any], *, environment: str, source: str = "subscriptions"
) -> DesiredState:
    problems: list[str] = []
    defaults = document.get("defaults", {})
    lists = document.get("lists", {})
    permissions = tuple(document.get("permissions", ()))
    renew_at = float(defaults.get("renew_at", DEFAULT_RENEW_AT))
    if not 0.1 <= renew_at <= 0.9:
        problems.append(f"defaults.renew_at {renew_at} must be between 0.1 and 0.9 [renew-at]")
    written = [p for p in permissions if is_write_permission(p)]
    if written:
        problems.append(
            f"permissions {written} are write-scoped; Graph subscriptions accept only the read "
            "permission (e.g. Chat.Read.All, not Chat.ReadWrite.All) [read-only-permissions]"
        )
    subscriptions: list[DesiredSubscription] = []
    for index, entry in enumerate(document.get("subscription", []), start=1):
        merged = {**defaults, **entry}
        for resource in _expand(merged, lists, index, problems):
            subscription = _declared(merged, resource, index, problems)
            if subscription is not None:
                problems.extend(validate(subscription, permissions, where=f"subscription {index}"))
                subscriptions.append(subscription)
    seen: dict[tuple[str, str], str] = {}
    for subscription in subscriptions:
        if subscription.key in seen:
            problems.append(
                f"{subscription.resource} ({subscription.change_type}) is declared twice; "
                "Graph allows one per app, resource and change types [duplicate]"
            )
        seen[subscription.key] = subscription.resource
    if not subscriptions and not problems:
        problems.append("no [[subscription]] declared [empty]")
    if problems:
        raise DesiredStateError(source, problems)
    declared = tuple(
        dict.fromkeys(
            str(entry["resource"])
            for entry in document.get("subscription", [])
            if isinstance(entry.get("resource"), str)
        )
    )
    return DesiredState(environment, tuple(subscriptions), permissions, renew_at, declared)


def validate(
    subscription: DesiredSubscription, permissions: Sequence[str], *, where: str
) -> list[str]:
    """Every Graph rule this subscription breaks, each naming its rule."""
    label = f"{where} ({subscription.resource})"
    rule = rule_for(subscription.resource)
    if rule is None:
        return [f"{label}: not a resource graphtap knows Graph's limits for [unknown-resource]"]
    problems = []
    minutes = subscription.lifetime.total_seconds() / 60
    maximum = rule.max_minutes(subscription.rich)
    if minutes > maximum:
        kind = "rich" if subscription.rich else "basic"
        problems.append(
            f"{label}: lifetime {minutes:g} min exceeds Graph's maximum of {maximum} min for "
            f"{kind} {rule.name} subscriptions [max-lifetime]"
        )
    if minutes < MIN_LIFETIME_MINUTES:
        problems.append(
            f"{label}: lifetime {minutes:g} min is below Graph's floor of "
            f"{MIN_LIFETIME_MINUTES} min [min-lifetime]"
        )
    if rule.teams and minutes > TEAMS_LIFECYCLE_THRESHOLD_MINUTES and not subscription.lifecycle:
        problems.append(
            f"{label}: Teams subscriptions living over {TEAMS_LIFECYCLE_THRESHOLD_MINUTES} min "
            "need a lifecycleNotificationUrl; set lifecycle = true [lifecycle-url]"
        )
    if subscription.rich and rule.rich_requires_select and "$select=" not in subscription.resource:
        problems.append(
            f"{label}: rich Outlook subscriptions need $select in the resource [rich-select]"
        )
    bad = sorted(set(subscription.change_types) - CHANGE_TYPES)
    if bad or not subscription.change_types:
        problems.append(
            f"{label}: change types {bad or '(none)'} are not created/updated/deleted "
            "[change-types]"
        )
    granted = [p for p in permissions if p in rule.permissions]
    if not granted:
        problems.append(
            f"{label}: needs one of the application permissions {list(rule.permissions)}; "
            f"declared {list(permissions) or 'none'} [permission]"
        )
    return problems


def _expand(
    entry: Mapping[str, Any], lists: Mapping[str, Any], index: int, problems: list[str]
) -> list[str]:
    resource = entry.get("resource")
    if not isinstance(resource, str) or not resource.startswith("/"):
        problems.append(f"subscription {index}: resource must be a path like /chats/getAllMessages")
        return []
    name = entry.get("for_each")
    if name is None:
        if "{id}" in resource:
            problems.append(f"subscription {index}: {resource} has {{id}} but no for_each list")
            return []
        return [resource]
    values = lists.get(name)
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        problems.append(f"subscription {index}: for_each = {name!r} names no [lists] entry")
        return []
    if "{id}" not in resource:
        problems.append(f"subscription {index}: for_each needs {{id}} in the resource")
        return []
    return [resource.replace("{id}", value) for value in values]


def _declared(
    entry: Mapping[str, Any], resource: str, index: int, problems: list[str]
) -> DesiredSubscription | None:
    try:
        minutes = float(entry.get("lifetime_minutes", 0))
        change_types = entry.get("change_types", ["created", "updated", "deleted"])
        rich = entry.get("rich", True)
        lifecycle = entry.get("lifecycle", True)
        if not isinstance(rich, bool) or not isinstance(lifecycle, bool):
            raise TypeError("rich and lifecycle must be true or false")
        if not isinstance(change_types, list):
            raise TypeError("change_types must be a list")
    except (TypeError, ValueError) as exc:
        problems.append(f"subscription {index} ({resource}): {exc}")
        return None
    if minutes <= 0:
        rule = rule_for(resource)
        minutes = float(rule.max_minutes(rich)) if rule is not None else 0.0
    return DesiredSubscription(
        resource=resource,
        change_types=tuple(str(c) for c in change_types),
        rich=rich,
        lifetime=dt.timedelta(minutes=minutes),
        lifecycle=lifecycle,
    )
