"""What an environment does about a verdict in Teams, beyond reporting it.

The `[enforcement]` section of an environment's policy file:

    [enforcement]
    mode = "dry_run"          # report (the default) | dry_run | enforce
    lift_on_fix = true        # an edited message that no longer violates is unblocked
    tip = "This message may contain sensitive data."        # the default policy tip
    compliance_url = "https://contoso.example/dlp"         # the default link beside it

    [[enforcement.rules]]
    name = "payment cards"
    action = "block"          # notify_sender | block_external | block
    types = ["credit_card_number"]       # optional: every type when absent
    min_severity = "high"     # optional: low (the default) | medium | high | critical
    min_confidence = 85       # optional: 0 (the default) - 100
    tip = "Card numbers never go in chat."              # optional: the default tip
    compliance_url = "https://contoso.example/cards"   # optional: the default URL
    allow_override = true     # optional: the sender may override with a justification

A finding matches a rule when its type is one the rule names (or the rule names none), its
confidence reaches `min_confidence` and its type's severity reaches `min_severity`. Of the
rules some finding matches, the strongest action wins (block > block_external >
notify_sender), the first such rule in the file when two tie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SEVERITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")
#: Weakest first: the strongest matching action wins.
ACTIONS: tuple[str, ...] = ("notify_sender", "block_external", "block")
MODES: tuple[str, ...] = ("report", "dry_run", "enforce")
DEFAULT_TIP = "This message may contain sensitive information and was flagged by policy."
MAX_TIP_CHARS = 500

_SECTION_KEYS = frozenset({"mode", "lift_on_fix", "tip", "compliance_url", "rules"})
_RULE_KEYS = frozenset(
    {
        "name",
        "action",
        "types",
        "min_severity",
        "min_confidence",
        "tip",
        "compliance_url",
        "allow_override",
    }
)


class EnforcementError(ValueError):
    """The `[enforcement]` section is not valid; the message names the key and the rule."""


@dataclass(frozen=True)
class EnforcementRule:
    name: str
    action: str
    tip: str
    compliance_url: str
    types: frozenset[str] = frozenset()  # empty: every type
    min_severity: str = "low"
    min_confidence: int = 0
    allow_override: bool = False

    @property
    def strength(self) -> int:
        return ACTIONS.index(self.action)

    def admits(self, kind: str, confidence: int, severity: str) -> bool:
        return (
            (not self.types or kind in self.types)
            and confidence >= self.min_confidence
            and severity in SEVERITY_ORDER
            and SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(self.min_severity)
        )


@dataclass(frozen=True)
class Match:
    """The rule that decides a message, and the types any rule matched."""

    rule: EnforcementRule
    types: tuple[str, ...]  # sorted
    confidence: int  # the highest among their findings


@dataclass(frozen=True)
class Enforcement:
    """report: verdicts only. dry_run: the action is decided and recorded, Graph never called.
    enforce: the action is written to the outbox for the actor to apply."""

    mode: str = "report"
    lift_on_fix: bool = False
    tip: str = DEFAULT_TIP
    compliance_url: str = ""
    rules: tuple[EnforcementRule, ...] = ()

    @property
    def acts(self) -> bool:
        """Whether verdicts carry an action at all."""
        return self.mode != "report" and bool(self.rules)

    def match(
        self, findings: Iterable[Mapping[str, Any]], severity_of: Callable[[str], str]
    ) -> Match | None:
        """The strongest rule some finding matches (None: no rule does), with every type
        and the highest confidence of the findings any rule matches: an override then
        covers exactly those, and a type it did not cover is a new violation."""
        seen = [(str(f.get("type")), int(f.get("confidence") or 0)) for f in findings]
        graded = [(kind, confidence, severity_of(kind)) for kind, confidence in seen]
        best: EnforcementRule | None = None
        hits: dict[str, int] = {}
        for rule in self.rules:  # in file order: on a tie the first rule stays
            for kind, confidence, severity in graded:
                if rule.admits(kind, confidence, severity):
                    hits[kind] = max(hits.get(kind, 0), confidence)
                    if best is None or rule.strength > best.strength:
                        best = rule
        if best is None:
            return None
        return Match(best, tuple(sorted(hits)), max(hits.values()))

    def tips(self) -> frozenset[tuple[str, str]]:
        """Every (tip, compliance URL) this policy sets: how a violation we set is known."""
        return frozenset(
            {(self.tip, self.compliance_url), *((r.tip, r.compliance_url) for r in self.rules)}
        )


def parse_enforcement(table: Any, known_types: Iterable[str]) -> Enforcement:
    """The `[enforcement]` table; errors name the key (and the rule) at fault."""
    if not isinstance(table, dict):
        raise EnforcementError("[enforcement] must be a table")
    unknown = sorted(set(table) - _SECTION_KEYS)
    if unknown:
        raise EnforcementError(
            f"[enforcement]: unknown key(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(_SECTION_KEYS))}"
        )
    mode = table.get("mode", "report")
    if mode not in MODES:
        raise EnforcementError(
            f"[enforcement] mode: must be one of {', '.join(MODES)}, not {mode!r}"
        )
    lift_on_fix = _bool(table, "lift_on_fix", False, "[enforcement]")
    tip = _tip(table.get("tip", DEFAULT_TIP), "[enforcement] tip")
    url = _url(table.get("compliance_url", ""), "[enforcement] compliance_url")
    rules_table = table.get("rules", [])
    if not isinstance(rules_table, list):
        raise EnforcementError("[enforcement] rules: declare each rule as [[enforcement.rules]]")
    known = frozenset(known_types)
    rules: list[EnforcementRule] = []
    for number, entry in enumerate(rules_table, start=1):
        rule = _rule(entry, number, known, tip, url)
        if any(r.name == rule.name for r in rules):
            raise EnforcementError(
                f"[[enforcement.rules]] #{number} ({rule.name}): name: another rule has this name"
            )
        rules.append(rule)
    if mode != "report" and not rules:
        raise EnforcementError(
            f"[enforcement] mode: {mode!r} needs at least one [[enforcement.rules]] entry"
        )
    return Enforcement(mode, lift_on_fix, tip, url, tuple(rules))


def _rule(entry: Any, number: int, known: frozenset[str], tip: str, url: str) -> EnforcementRule:
    if not isinstance(entry, dict):
        raise EnforcementError(f"[[enforcement.rules]] #{number}: must be a table")
    name = entry.get("name")
    where = f"[[enforcement.rules]] #{number}" + (f" ({name})" if isinstance(name, str) else "")
    if not isinstance(name, str) or not name.strip():
        raise EnforcementError(f"{where}: name: every rule needs a non-empty name")
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise EnforcementError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_RULE_KEYS))}"
        )
    action = entry.get("action")
    if action not in ACTIONS:
        raise EnforcementError(
            f"{where}: action: must be one of {', '.join(ACTIONS)}, not {action!r}"
        )
    types = entry.get("types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise EnforcementError(f"{where}: types: must be a list of type names")
    strange = sorted(set(types) - known)
    if strange:
        raise EnforcementError(f"{where}: types: unknown type(s) {', '.join(strange)}")
    severity = entry.get("min_severity", "low")
    if severity not in SEVERITY_ORDER:
        raise EnforcementError(
            f"{where}: min_severity: must be one of {', '.join(SEVERITY_ORDER)}, not {severity!r}"
        )
    confidence = entry.get("min_confidence", 0)
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int)
        or not 0 <= confidence <= 100
    ):
        raise EnforcementError(
            f"{where}: min_confidence: must be an integer 0-100, not {confidence!r}"
        )
    return EnforcementRule(
        name=name,
        action=action,
        tip=_tip(entry.get("tip", tip), f"{where}: tip"),
        compliance_url=_url(entry.get("compliance_url", url), f"{where}: compliance_url"),
        types=frozenset(types),
        min_severity=severity,
        min_confidence=confidence,
        allow_override=_bool(entry, "allow_override", False, where),
    )


def _bool(table: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise EnforcementError(f"{where}: {key}: must be true or false, not {value!r}")
    return value


def _tip(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EnforcementError(f"{where}: must be non-empty text")
    if len(value) > MAX_TIP_CHARS:
        raise EnforcementError(f"{where}: at most {MAX_TIP_CHARS} characters, not {len(value)}")
    return value


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise EnforcementError(f"{where}: must be text")
    if value and not value.startswith("https://"):
        raise EnforcementError(f"{where}: must be an https:// URL, not {value[:80]!r}")
    return value
