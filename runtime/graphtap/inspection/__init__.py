"""The DLP engine: find sensitive values in message content and report them safely.

    settings = InspectionSettings(hash_key=key, policy=load_policy(path) or Policy.default())
    inspector = Inspector(settings)            # once per worker process
    result = inspector.inspect_message(chat_message)
    result.findings, result.severity

Types and confidence follow Microsoft Purview's sensitive information types (a validated
primary match plus supporting keywords within 300 characters: 85 / 75 / 65, and 55 for an
unformatted post-2011 SSN); secrets that identify themselves by prefix or checksum are high
without a keyword. Findings never carry the value: see `findings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphtap.inspection.engine import (
    Candidate,
    Engine,
    EngineName,
    build_engine,
    hyperscan_available,
)
from graphtap.inspection.findings import Finding, ValueHasher, preview
from graphtap.inspection.policy import (
    NO_SEVERITY,
    SEVERITIES,
    Policy,
    PolicyError,
    TypePolicy,
    highest_severity,
    load_policy,
)
from graphtap.inspection.rules import RULES, TYPES
from graphtap.inspection.text import html_to_text, message_text, normalise

__all__ = [
    "MAX_FINDINGS",
    "MAX_POSITIONS",
    "TYPES",
    "Finding",
    "InspectionResult",
    "InspectionSettings",
    "Inspector",
    "Policy",
    "PolicyError",
    "TypePolicy",
    "hyperscan_available",
    "load_policy",
]

_ENGINES = ("auto", "hyperscan", "python")


@dataclass(frozen=True)
class InspectionSettings:
    """`hash_key`: the environment's finding hash key (32 random bytes; never committed)."""

    hash_key: bytes = field(repr=False)  # a secret: kept out of tracebacks and logs
    policy: Policy = field(default_factory=Policy.default)
    engine: EngineName = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.hash_key, bytes) or not self.hash_key:
            raise ValueError("InspectionSettings.hash_key must be non-empty bytes")
        if not isinstance(self.policy, Policy):
            raise TypeError(
                f"InspectionSettings.policy must be a Policy, not {type(self.policy).__name__}"
            )
        if self.engine not in _ENGINES:
            raise ValueError(
                f"InspectionSettings.engine must be one of {', '.join(_ENGINES)},"
                f" not {self.engine!r}"
            )


#: A result lists at most this many findings, and a finding at most this many positions, so a
#: verdict fits one findings-hub event (1 MB) whatever a message holds. Counts are never cut:
#: `finding_total` and each finding's `count` include what the lists leave out.
MAX_FINDINGS = 100
MAX_POSITIONS = 100


@dataclass(frozen=True)
class InspectionResult:
    findings: tuple[Finding, ...]
    severity: str  # "none" when no finding passes the policy; from every finding, listed or not
    #: True when findings or positions were left out of the lists (see `MAX_FINDINGS`).
    truncated: bool = False
    #: Findings that passed the policy but are not listed.
    omitted: int = 0

    @property
    def finding_total(self) -> int:
        """Every finding that passed the policy, listed or not."""
        return len(self.findings) + self.omitted

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "findings": [f.to_dict() for f in self.findings],
            "findings_truncated": self.truncated,
            "finding_total": self.finding_total,
        }


_CLEAN = InspectionResult((), NO_SEVERITY)


class Inspector:
    """Built once per worker (the scanners and automaton are compiled here, not per call).
    Not thread-safe: the Hyperscan scratch space belongs to one caller at a time."""

    def __init__(self, settings: InspectionSettings) -> None:
        self.settings = settings
        # The built-in rules, then the policy's own types (custom patterns, exact data).
        rules = (*RULES, *settings.policy.custom_rules(settings.hash_key))
        self._engine: Engine = build_engine(rules, settings.engine)
        self._hash = ValueHasher(settings.hash_key)
        self._policy = settings.policy

    @property
    def engine(self) -> str:
        """The engine in use: "hyperscan" or "python" ("auto" resolved)."""
        return self._engine.name

    def inspect_message(self, message: Mapping[str, Any]) -> InspectionResult:
        """A decrypted Graph chatMessage or Outlook message (subject, body, attachments...)."""
        return self._inspect(message_text(message))

    def inspect_html(self, html: str) -> InspectionResult:
        return self._inspect(html_to_text(html))

    def inspect_text(self, text: str) -> InspectionResult:
        return self._inspect(normalise(text))

    def _inspect(self, text: str) -> InspectionResult:
        """Positions in findings are offsets in `text`, the extracted, normalised text."""
        candidates = self._engine.find(text)
        if not candidates:
            return _CLEAN
        return self._report(candidates)

    def _report(self, candidates: list[Candidate]) -> InspectionResult:
        """One finding per (type, normalised value) with the occurrences the policy admits."""
        rules = self._engine.rules
        grouped: dict[tuple[int, str], list[Candidate]] = {}
        for candidate in candidates:
            key = (candidate.rule, rules[candidate.rule].normalise(candidate.value))
            grouped.setdefault(key, []).append(candidate)
        # Per type: (rule, normalised value, admitted occurrences, highest confidence).
        per_type: dict[str, list[tuple[int, str, list[Candidate], int]]] = {}
        for (index, value), found in grouped.items():
            rule = rules[index]
            minimum = self._policy.for_type(rule.type).min_confidence
            admitted = [c for c in found if c.confidence >= minimum]
            if admitted:
                confidence = max(c.confidence for c in admitted)
                per_type.setdefault(rule.type, []).append((index, value, admitted, confidence))
        reported: list[tuple[int, str, list[Candidate], int]] = []
        severities: list[str] = []
        for kind, values in per_type.items():
            policy = self._policy.for_type(kind)
            if sum(len(admitted) for _, _, admitted, _ in values) < policy.min_count:
                continue
            reported.extend(values)
            severities.append(policy.severity)
        if not reported:
            return _CLEAN
        total = len(reported)
        truncated = total > MAX_FINDINGS
        if truncated:  # the most severe and most confident first, then the earliest
            rank = {
                kind: SEVERITIES.index(self._policy.for_type(kind).severity) for kind in per_type
            }
            reported.sort(
                key=lambda r: (-rank[rules[r[0]].type], -r[3], r[2][0].start, rules[r[0]].type)
            )
            del reported[MAX_FINDINGS:]  # counted, never hashed
        findings: list[Finding] = []
        for index, value, admitted, confidence in reported:
            rule = rules[index]
            truncated = truncated or len(admitted) > MAX_POSITIONS
            findings.append(
                Finding(
                    type=rule.type,
                    confidence=confidence,
                    count=len(admitted),
                    preview=preview(value, rule.preview_chars),
                    positions=tuple(c.start for c in admitted[:MAX_POSITIONS]),
                    value_hash=self._hash(value),
                )
            )
        findings.sort(key=lambda f: (f.positions[0], f.type))
        omitted = total - len(findings)
        return InspectionResult(tuple(findings), highest_severity(severities), truncated, omitted)
