"""What a detection rule is: data, not code paths (the gitleaks model).

A rule names its type, the primary pattern, the validator a match must pass, how confident a
validated match is with or without a supporting keyword nearby, and examples of what it must
and must not find, which one parametrised test runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Numbers stand alone: not glued to letters, not part of a dotted version, a +phone, a
# hyphenated id or an amount of money; a sentence may end right after them.
# (A colon right after a word is a label's, `SSN:536221844`; after a digit, a time's.)
NUMBER_BEFORE = r"(?<![0-9A-Za-z_+\-./$])(?<![^A-Za-z]:)(?<!^:)"
NUMBER_AFTER = r"(?![0-9A-Za-z_]|[\-./:,@][0-9A-Za-z])"
# The same two conditions as characters consumed, which Hyperscan matches exactly (it only
# approximates lookarounds): a numeric rule then fires only when it truly has a match.
HYPERSCAN_NUMBER_BEFORE = r"(?:^|[^0-9A-Za-z_+\-./:$]|[A-Za-z]:)"
HYPERSCAN_NUMBER_AFTER = r"(?:$|[^0-9A-Za-z_\-./:,@]|[\-./:,@](?:$|[^0-9A-Za-z]))"
# The start of an IBAN (country, check digits, groups) right before a number: the number is
# the IBAN's digits (`FR76 3000 6000 0112 3456 ...` holds a Luhn-valid Diners run), whether
# the IBAN's own check passes or not.
INSIDE_IBAN = r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]{4}){0,7}[ \-]?"


@dataclass(slots=True)
class Evidence:
    """What the engine learned about one validated match, for the rule to score. Not frozen:
    one is built for every match, and a frozen dataclass's constructor costs several times
    more; a rule only reads it."""

    match: str  # the whole match, context included (e.g. `AccountKey=...`)
    value: str  # the value itself
    keyword: bool  # a supporting keyword within the proximity window
    extra: bool = False  # the rule's secondary evidence (a card's expiry date)


def joined(*keywords: str) -> tuple[str, ...]:
    """The keywords and, for those of several words, the forms written together or with
    `#` for "number" (`passportnumber`, `passportno`, `ssn#`), as people type them."""
    out: dict[str, None] = {}
    for keyword in keywords:
        out[keyword] = None
        if " " in keyword:
            out[keyword.replace(" ", "")] = None
        for word in (" number", " no"):
            if keyword.endswith(word) and " " in keyword[: -len(word)]:
                out[keyword[: -len(word)].replace(" ", "") + word.strip()] = None
    return tuple(out)


def _keep(value: str) -> Iterable[str]:
    return (value,)


def _same(value: str) -> str:
    return value


@dataclass(frozen=True)
class Rule:
    type: str
    pattern: str  # `regex` syntax, ASCII; the named group `v` (if any) is the value
    validate: Callable[[str], bool]
    score: Callable[[Evidence], int | None]  # None: not reported at any confidence
    keywords: tuple[str, ...] = ()
    # Keywords that count only in the case written (`NAS`: "nas" is a Portuguese word).
    cased_keywords: tuple[str, ...] = ()
    # Lower-case literals of which every match contains one: the pure-Python prefilter.
    # Empty means the rule always runs there (digit formats have no literal to look for).
    atoms: tuple[str, ...] = ()
    # Given when the pattern uses what Hyperscan cannot even approximate (backreferences).
    hyperscan_pattern: str | None = None
    ignore_case: bool = False
    normalise: Callable[[str], str] = _same
    # Prefixes of a raw value to try in order (e.g. an IBAN followed by an upper-case word).
    trims: Callable[[str], Iterable[str]] = _keep
    # Credentials: drop masks, template variables and example values (and example hosts in
    # the same line when `context_matters`).
    placeholders: bool = False
    context_matters: bool = False
    # The match is a standalone number: it starts where NUMBER_BEFORE allows with a digit or
    # an upper-case letter and continues with digits, spaces and dashes only. The engine then
    # tries it only on number runs instead of scanning the whole text for it.
    numeric: bool = False
    number_length: tuple[int, int] = (6, 17)  # shortest and longest match of a numeric rule
    # The longest match of a rule that is not numeric, where that is bounded (an identifier
    # with letters): a rule that needs a keyword is then searched only near its keywords, as
    # a number rule is, instead of over the whole text.
    longest: int | None = None
    # Never reported without one of `keywords` nearby (SSN, bank account, passport): the
    # engine skips the rule outright for text that has none of them anywhere.
    requires_keyword: bool = False
    # Weak number formats: a number right after another label (order, phone, ...) is that,
    # and one followed by a unit or counted noun ("584661 impressions") is a quantity.
    labelled_elsewhere_excludes: bool = False
    # A secondary pattern searched in the proximity window (Purview's expiry-date function).
    extra_evidence: str | None = None
    # A pattern that, ending right where a match starts (within 48 characters before it),
    # says the match is part of something else: the match is then not reported. None:
    # INSIDE_IBAN for a numeric rule (no number is read out of an IBAN's digits).
    not_after: str | None = None
    # Keywords count only this close (characters either side); None: Purview's 300.
    proximity: int | None = None
    # Trailing characters of the normalised value a finding's preview may show (at most 4).
    preview_chars: int = 4
    true_examples: tuple[str, ...] = ()
    false_examples: tuple[str, ...] = field(default=())
