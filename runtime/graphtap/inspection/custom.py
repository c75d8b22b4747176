"""Types a tenant declares in its policy file, as Purview lets it: patterns and exact data.

A custom type is a pattern, a validator from a named set, supporting keywords within a
proximity, confidence levels and a severity:

    [custom_types.employee_id]
    pattern = 'EMP-[0-9]{6}'        # `regex` syntax; a group (?P<v>...) marks the value
    validator = "luhn"              # luhn | mod97 | mod11 | mod11_descending | mod11_proof
                                    # | verhoeff | none (the default)
    keywords = ["employee id", "staff number"]
    proximity = 300                 # characters either side, 1-300
    keyword_required = false
    confidence = 85                 # with a keyword
    confidence_alone = 75           # without one (not reported when keyword_required)
    severity = "high"               # and min_confidence / min_count, as under [types.*]

An exact-data-match list finds only the values it lists. The list is a file of HMAC-SHA256
values (hex, one a line, `#` comments) of the normalised values under the environment's
finding hash key, so the raw values are never stored, and a finding's `value_hash` is the
very line that matched (`graphtap edm-hash` writes such a file):

    [exact_data.customer_numbers]
    file = "customers.hmac"         # relative to the policy file
    pattern = '[0-9]{8}'            # the shape of a candidate
    normalise = "digits"            # digits | upper | compact | none (the default)
    keywords = ["customer"]         # as above, with confidence, severity, ...
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from graphtap.inspection import validators
from graphtap.inspection.findings import ValueHasher
from graphtap.inspection.keywords import LONGEST_KEYWORD, PROXIMITY
from graphtap.inspection.rules import TYPES, Evidence, Rule

# ISO/IEC 7064 and the weighted mod-11 schemes identifiers use.
CHECKSUMS: Mapping[str, validators.Check] = {
    "none": lambda value: True,
    "luhn": lambda value: (
        len(digits := validators.digits_of(value)) > 1 and validators.luhn(digits)
    ),
    "mod97": lambda value: validators.mod97(value),
    "mod11": lambda value: validators.mod11(validators.digits_of(value)),
    "mod11_descending": lambda value: validators.mod11_descending(validators.digits_of(value)),
    "mod11_proof": lambda value: validators.mod11_proof(validators.digits_of(value)),
    "verhoeff": lambda value: (
        len(digits := validators.digits_of(value)) > 1 and validators.verhoeff(digits)
    ),
}

NORMALISERS: Mapping[str, Callable[[str], str]] = {
    "none": lambda value: value,
    "digits": validators.digits_of,
    "upper": str.upper,
    "compact": lambda value: re.sub(r"[\s\-.]", "", value).upper(),
}

_NAME = re.compile(r"[a-z][a-z0-9_]{1,63}")
_HMAC = re.compile(r"[0-9a-f]{64}")
_POLICY_KEYS = frozenset({"severity", "min_confidence", "min_count"})
_COMMON_KEYS = frozenset(
    {"pattern", "keywords", "proximity", "keyword_required", "confidence", "confidence_alone",
     "ignore_case"}
) | _POLICY_KEYS  # fmt: skip
_CUSTOM_KEYS = _COMMON_KEYS | {"validator"}
_EXACT_KEYS = _COMMON_KEYS | {"file", "normalise"}


class DeclarationError(ValueError):
    """A custom type or exact-data list the policy cannot hold; the message names the key."""


@dataclass(frozen=True)
class CustomType:
    """One declared type; `rule(hash_key)` is what the engines run."""

    name: str
    pattern: str
    keywords: tuple[str, ...] = ()
    proximity: int = PROXIMITY
    keyword_required: bool = False
    confidence: int = 85
    confidence_alone: int = 75
    ignore_case: bool = False
    validator: str = "none"  # a CHECKSUMS name
    normalise: str = "none"  # a NORMALISERS name
    # Exact data match: the HMACs of the listed values (None for a pattern type).
    exact: frozenset[str] | None = field(default=None, repr=False)

    def rule(self, hash_key: bytes) -> Rule:
        normalise = NORMALISERS[self.normalise]
        validate = CHECKSUMS[self.validator]
        if self.exact is not None:
            validate = _listed(self.exact, ValueHasher(hash_key), normalise)
        return Rule(
            type=self.name,
            pattern=self.pattern,
            validate=validate,
            score=_scorer(
                self.confidence, None if self.keyword_required else self.confidence_alone
            ),
            keywords=self.keywords,
            ignore_case=self.ignore_case,
            normalise=normalise,
            requires_keyword=self.keyword_required,
            proximity=self.proximity,
            true_examples=(),
            false_examples=(),
        )


def _listed(
    listed: frozenset[str], hasher: ValueHasher, normalise: Callable[[str], str]
) -> validators.Check:
    """Exact data: the value's HMAC under the environment's key is on the list."""

    def validate(value: str) -> bool:
        return hasher(normalise(value)) in listed

    return validate


def _scorer(with_keyword: int, alone: int | None) -> Callable[[Evidence], int | None]:
    def score(evidence: Evidence) -> int | None:
        return with_keyword if evidence.keyword else alone

    return score


def parse(
    document: Mapping[str, Any], source: Path | None
) -> tuple[tuple[CustomType, ...], dict[str, dict[str, Any]]]:
    """The declarations in a policy document, and each one's policy keys (severity, ...).

    `source` is the policy file (exact-data files are relative to it); errors name the table
    and key: `[custom_types.employee_id] pattern: ...`."""
    declared: list[CustomType] = []
    policies: dict[str, dict[str, Any]] = {}
    for section, keys in (("custom_types", _CUSTOM_KEYS), ("exact_data", _EXACT_KEYS)):
        tables = document.get(section, {})
        if not isinstance(tables, dict):
            raise DeclarationError(f"[{section}] must be a table of [{section}.<name>] tables")
        for name, table in tables.items():
            where = f"[{section}.{name}]"
            if not isinstance(table, dict):
                raise DeclarationError(f"{where} must be a table")
            if name in TYPES or name in policies:
                raise DeclarationError(f"{where}: the type {name!r} already exists")
            if not _NAME.fullmatch(name):
                raise DeclarationError(
                    f"{where}: a type name is lower case letters, digits and _ (2-64)"
                )
            unknown = sorted(set(table) - keys)
            if unknown:
                known = ", ".join(sorted(keys))
                raise DeclarationError(
                    f"{where}: unknown key(s) {', '.join(unknown)}; known: {known}"
                )
            declared.append(_declaration(name, table, where, section == "exact_data", source))
            policies[name] = {key: table[key] for key in _POLICY_KEYS if key in table}
    return tuple(declared), policies


def _declaration(
    name: str, table: Mapping[str, Any], where: str, exact: bool, source: Path | None
) -> CustomType:
    def need(key: str, kind: type, default: Any = None) -> Any:
        if key not in table:
            if default is None:
                raise DeclarationError(f"{where}: {key} is required")
            return default
        value = table[key]
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise DeclarationError(f"{where} {key}: must be {kind.__name__}, not {value!r}")
        return value

    pattern = need("pattern", str)
    ignore_case = need("ignore_case", bool, False)
    _check_pattern(pattern, ignore_case, f"{where} pattern")
    keywords = tuple(need("keywords", list, []))
    for keyword in keywords:
        if not isinstance(keyword, str) or not keyword.strip():
            raise DeclarationError(f"{where} keywords: {keyword!r} is not a word or phrase")
        if len(keyword) > LONGEST_KEYWORD:
            raise DeclarationError(
                f"{where} keywords: {keyword!r} is longer than {LONGEST_KEYWORD} characters"
            )
    proximity = need("proximity", int, PROXIMITY)
    if not 1 <= proximity <= PROXIMITY:
        raise DeclarationError(f"{where} proximity: must be 1-{PROXIMITY}, not {proximity}")
    keyword_required = need("keyword_required", bool, False)
    if keyword_required and not keywords:
        raise DeclarationError(f"{where} keyword_required: the type declares no keywords")
    confidence = need("confidence", int, 85)
    confidence_alone = need("confidence_alone", int, 75)
    for key, value in (("confidence", confidence), ("confidence_alone", confidence_alone)):
        if not 1 <= value <= 100:
            raise DeclarationError(f"{where} {key}: must be 1-100, not {value}")
    validator, normalise, listed = "none", "none", None
    if exact:
        normalise = need("normalise", str, "none")
        if normalise not in NORMALISERS:
            raise DeclarationError(
                f"{where} normalise: {normalise!r} is not one of {', '.join(NORMALISERS)}"
            )
        listed = _exact_list(need("file", str), where, source)
    else:
        validator = need("validator", str, "none")
        if validator not in CHECKSUMS:
            raise DeclarationError(
                f"{where} validator: {validator!r} is not one of {', '.join(CHECKSUMS)}"
            )
    return CustomType(
        name=name,
        pattern=pattern,
        keywords=tuple(keyword.lower() for keyword in keywords),
        proximity=proximity,
        keyword_required=keyword_required,
        confidence=confidence,
        confidence_alone=confidence_alone,
        ignore_case=ignore_case,
        validator=validator,
        normalise=normalise,
        exact=listed,
    )


def _check_pattern(pattern: str, ignore_case: bool, where: str) -> None:
    """The pattern compiles for both engines and cannot match the empty string."""
    # Hyperscan reads the text as UTF-8 bytes: a character past ASCII, written or escaped,
    # would be looked for as a byte no UTF-8 text holds, and the engines would disagree.
    if not pattern.isascii() or _NON_ASCII_ESCAPE.search(pattern):
        raise DeclarationError(
            f"{where}: may name ASCII characters only (identifiers, codes and numbers; the "
            "text has full-width forms folded to ASCII already)"
        )
    flags = regex.ASCII | regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0)
    try:
        compiled = regex.compile(pattern, flags)
    except regex.error as exc:
        raise DeclarationError(f"{where}: not a valid pattern: {exc}") from None
    if compiled.fullmatch("") or _shortest_match(pattern, ignore_case) == 0:
        raise DeclarationError(f"{where}: matches the empty string (a match of no characters)")
    groups = set(compiled.groupindex)
    if groups - {"v"}:
        raise DeclarationError(f"{where}: the only named group allowed is (?P<v>...)")
    from graphtap.inspection.engine import hyperscan_compiles

    problem = hyperscan_compiles(pattern, ignore_case)
    if problem:
        raise DeclarationError(f"{where}: Hyperscan cannot compile it: {problem}")


def _shortest_match(pattern: str, ignore_case: bool) -> int | None:
    """The fewest characters a match takes (0 for `\\b` or a lookahead alone, which match
    between characters and so never report anything), as the standard library's parser
    reads the pattern; None for syntax only `regex` knows."""
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (its FutureWarnings on set syntax)
        try:
            width: tuple[int, int] = _STANDARD_PARSER.parse(pattern, flags).getwidth()
        except (re.error, OverflowError, RecursionError):
            return None
    return width[0]


_STANDARD_PARSER: Any = importlib.import_module("re._parser")


# An escape naming a character past ASCII: \x80-\xff, \x{...} over 7f, \u, \U, \N{...} and
# octal \200-\377 (an escaped backslash before it is no escape).
_NON_ASCII_ESCAPE = re.compile(
    r"(?<!\\)(?:\\\\)*\\(?:x[89a-fA-F][0-9a-fA-F]|x\{0*(?:[89a-fA-F][0-9a-fA-F]|[0-9a-fA-F]{3,})\}"
    r"|[uUN]|[23][0-7]{2})"
)


def _exact_list(file: str, where: str, source: Path | None) -> frozenset[str]:
    path = Path(file)
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DeclarationError(f"{where} file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DeclarationError(
            f"{where} file: {path} is not UTF-8 text (byte {exc.start}): a list holds one"
            " HMAC-SHA256 in hex a line"
        ) from None
    listed: set[str] = set()
    for number, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if not _HMAC.fullmatch(entry):
            raise DeclarationError(
                f"{where} file: {path} line {number} is not an HMAC-SHA256 in hex"
                " (the list holds HMACs of the values, never the values)"
            )
        listed.add(entry)
    if not listed:
        raise DeclarationError(f"{where} file: {path} lists no values")
    return frozenset(listed)
