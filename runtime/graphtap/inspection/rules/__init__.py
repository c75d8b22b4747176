"""The detection rules, as data. Order is priority: when two types claim the same characters
with equal confidence, the earlier (more specific) rule wins."""

from __future__ import annotations

from graphtap.inspection.rules import financial, secrets
from graphtap.inspection.rules.base import Evidence, Rule

RULES: tuple[Rule, ...] = (
    *(rule for rule in secrets.RULES if rule is not secrets.PASSWORD),  # self-identifying
    *financial.RULES,
    secrets.PASSWORD,  # last: a password may be any of the above pasted after `password=`
)

TYPES: tuple[str, ...] = tuple(rule.type for rule in RULES)

__all__ = ["RULES", "TYPES", "Evidence", "Rule"]
