"""Which findings an environment reports, and how severe a verdict carrying them is.

One TOML file per environment (`runtime/environments/<env>/policy.toml`):

    [default]                 # applies to every type not listed below
    min_confidence = 65       # 55 / 65 / 75 / 85, as Purview rates a match
    min_count = 1             # occurrences of the type in one message before it counts
    severity = "medium"       # low | medium | high | critical

    [types.credit_card_number]
    severity = "high"         # unspecified keys are taken from [default]

    [custom_types.<name>] and [exact_data.<name>] declare the tenant's own types: see `custom`.
    [enforcement] says what is done in Teams about a verdict: see `enforcement`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from graphtap.inspection.custom import CustomType, DeclarationError, parse
from graphtap.inspection.enforcement import Enforcement, EnforcementError, parse_enforcement
from graphtap.inspection.rules import TYPES, Rule

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
NO_SEVERITY = "none"


class PolicyError(ValueError):
    """The policy file is not valid; the message names the file and the offending key."""


@dataclass(frozen=True)
class TypePolicy:
    min_confidence: int = 65
    min_count: int = 1
    severity: str = "medium"

    def __post_init__(self) -> None:
        # TOML's true is a Python int too: refused, not read as 1.
        if (
            not isinstance(self.min_confidence, int)
            or isinstance(self.min_confidence, bool)
            or not 0 <= self.min_confidence <= 100
        ):
            raise PolicyError(
                f"min_confidence must be an integer 0-100, not {self.min_confidence!r}"
            )
        if (
            not isinstance(self.min_count, int)
            or isinstance(self.min_count, bool)
            or self.min_count < 1
        ):
            raise PolicyError(f"min_count must be an integer >= 1, not {self.min_count!r}")
        if self.severity not in SEVERITIES:
            raise PolicyError(
                f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}"
            )


@dataclass(frozen=True)
class Policy:
    """Per-type thresholds; `fallback` covers every type `types` does not list."""

    fallback: TypePolicy = field(default_factory=TypePolicy)
    types: Mapping[str, TypePolicy] = field(default_factory=lambda: MappingProxyType({}))
    # The tenant's own types (patterns and exact-data lists), declared in the same file.
    custom: tuple[CustomType, ...] = ()
    #: What is done in Teams about a verdict (report only unless the file says otherwise).
    enforcement: Enforcement = field(default_factory=Enforcement)

    def __post_init__(self) -> None:
        known = (*TYPES, *(declared.name for declared in self.custom))
        unknown = sorted(set(self.types) - set(known))
        if unknown:
            raise PolicyError(f"unknown type(s) {', '.join(unknown)}; known: {', '.join(known)}")
        object.__setattr__(self, "types", MappingProxyType(dict(self.types)))
        object.__setattr__(self, "custom", tuple(self.custom))

    def __hash__(self) -> int:
        return hash(
            (self.fallback, tuple(sorted(self.types.items())), self.custom, self.enforcement)
        )

    def __reduce__(
        self,
    ) -> tuple[
        type[Policy],
        tuple[TypePolicy, dict[str, TypePolicy], tuple[CustomType, ...], Enforcement],
    ]:
        """Picklable (a read-only mapping is not), so settings can go to worker processes."""
        return (Policy, (self.fallback, dict(self.types), self.custom, self.enforcement))

    def for_type(self, name: str) -> TypePolicy:
        return self.types.get(name, self.fallback)

    def custom_rules(self, hash_key: bytes) -> tuple[Rule, ...]:
        """The declared types as rules (exact-data lists match under `hash_key`)."""
        return tuple(declared.rule(hash_key) for declared in self.custom)

    @classmethod
    def default(cls) -> Policy:
        """The packaged default: every finding at 65 or above, severities by type."""
        return _packaged_default()


@cache
def _packaged_default() -> Policy:
    text = resources.files("graphtap.inspection").joinpath("default_policy.toml").read_text()
    return _parse(tomllib.loads(text), "default_policy.toml")


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def highest_severity(severities: list[str]) -> str:
    return max(severities, key=_severity_rank) if severities else NO_SEVERITY


def load_policy(path: str | Path | None) -> Policy | None:
    """The policy in `path`, or None when no path is given (callers fall back to the
    default). A path that does not exist or does not parse is an error, never a silent
    fallback: that would quietly change what an environment reports."""
    if path is None:
        return None
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PolicyError(f"policy file {path} does not exist") from exc
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {path} is not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path} is not valid TOML: {exc}") from exc
    return _parse(document, str(path), path)


_TYPE_KEYS = frozenset(f.name for f in fields(TypePolicy))


def _parse(document: dict[str, Any], source: str, path: Path | None = None) -> Policy:
    extra = sorted(
        set(document) - {"default", "types", "custom_types", "exact_data", "enforcement"}
    )
    if extra:
        raise PolicyError(
            f"{source}: unknown section(s) {', '.join(extra)}; expected [default],"
            " [types.<type>], [custom_types.<name>], [exact_data.<name>] and [enforcement]"
        )
    try:
        default = _type_policy(document.get("default", {}), TypePolicy(), f"{source} [default]")
        types_table = document.get("types", {})
        if not isinstance(types_table, dict):
            raise PolicyError(f"{source}: [types] must be a table of [types.<type>] tables")
        try:
            custom, custom_policies = parse(document, path)
        except DeclarationError as exc:
            raise PolicyError(f"{source} {exc}") from None
        types = {
            name: _type_policy(table, default, f"{source} [types.{name}]")
            for name, table in types_table.items()
        }
        for name, table in custom_policies.items():
            if name in types:
                raise PolicyError(
                    f"{source} [types.{name}]: a declared type's severity and thresholds"
                    f" belong in its own table"
                )
            types[name] = _type_policy(table, default, f"{source} [{_section(custom, name)}]")
        try:
            enforcement = parse_enforcement(
                document.get("enforcement", {}), (*TYPES, *(c.name for c in custom))
            )
        except EnforcementError as exc:
            raise PolicyError(f"{source} {exc}") from None
        return Policy(fallback=default, types=types, custom=custom, enforcement=enforcement)
    except PolicyError as exc:
        if str(exc).startswith(source):
            raise
        raise PolicyError(f"{source}: {exc}") from exc


def _section(custom: tuple[CustomType, ...], name: str) -> str:
    declared = next(item for item in custom if item.name == name)
    return f"{'exact_data' if declared.exact is not None else 'custom_types'}.{name}"


def _type_policy(table: Any, base: TypePolicy, where: str) -> TypePolicy:
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table")
    unknown = sorted(set(table) - _TYPE_KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TYPE_KEYS))}"
        )
    try:
        return TypePolicy(
            min_confidence=table.get("min_confidence", base.min_confidence),
            min_count=table.get("min_count", base.min_count),
            severity=table.get("severity", base.severity),
        )
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
