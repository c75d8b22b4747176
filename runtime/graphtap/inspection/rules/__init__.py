"""The detection rules, as data. Order is priority: when two types claim the same characters
with equal confidence, the earlier (more specific) rule wins."""

from __future__ import annotations

from graphtap.inspection.rules import credentials, financial, identity, secrets
from graphtap.inspection.rules.base import Evidence, Rule

_CONNECTION_STRINGS = (credentials.AZURE_CONNECTION_STRING, credentials.AZURE_SQL_CONNECTION_STRING)
_PASSWORDS = (
    secrets.PASSWORD,
    secrets.PASSWORD_COMMAND,
    secrets.PASSWORD_CURL_KEY,
    secrets.PASSWORD_COMPARED,
    secrets.PASSWORD_XML,
)

RULES: tuple[Rule, ...] = (
    # Connection strings first: a storage key or a password inside one is part of it.
    *_CONNECTION_STRINGS,
    *(rule for rule in secrets.RULES if rule not in _PASSWORDS),  # self-identifying
    *(rule for rule in credentials.RULES if rule not in _CONNECTION_STRINGS),
    *financial.RULES,
    *identity.RULES,
    *_PASSWORDS,  # last: a password may be any of the above pasted after `password=`
)

# One name per type, in rule order (a type may have more than one rule, as passwords do).
TYPES: tuple[str, ...] = tuple(dict.fromkeys(rule.type for rule in RULES))

__all__ = ["RULES", "TYPES", "Evidence", "Rule"]
