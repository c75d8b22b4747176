"""Supporting keywords, found by one Aho-Corasick automaton over the lower-cased text.

The same pass also finds the labels that say a number is something else (an order, a phone,
a build) and, for the pure-Python engine, the literal atoms that decide which rules to run.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

import ahocorasick

from graphtap.inspection.rules import Rule

# Purview measures keyword support within 300 characters either side of the primary match.
PROXIMITY = 300
# A label this close before a number names it ("Order # 12345678", "tel 4255550100").
LABEL_REACH = 24
LONGEST_KEYWORD = 48

# Words that, right before a number, say what else it is. (Not a bare "id" or "code":
# "passport ID" and "routing code" name the very types they precede.)
UNRELATED_LABELS: tuple[str, ...] = (
    "order", "order #", "order no", "po", "po #", "invoice", "inv", "ticket", "case",
    "incident", "request", "req", "change", "issue", "pr", "meeting", "meeting id",
    "conference", "conference id", "phone", "tel", "tel.", "cell", "mobile", "fax", "call",
    "ext", "extension", "build", "version", "ver", "release", "tracking", "tracking no",
    "tracking number", "serial", "serial no", "ref", "ref.", "reference", "order id",
    "employee id", "user id", "device id", "request id", "transaction id", "session id",
    "badge", "sku", "part", "model", "zip", "postal", "room", "confirmation", "booking",
    "reservation", "customer", "member", "policy", "claim", "shipment", "parcel", "otp", "pin",
)  # fmt: skip

# Words that, right after a number, make it a quantity ("584661 impressions", "120000 ms").
_QUANTITY_AFTER = re.compile(
    r" ?(?:%|(?:percent|ms|sec|secs|seconds|minutes|hours|days|weeks|months|years|kb|mb|gb|tb"
    r"|bytes|rows|records|items|units|pcs|pieces|users|people|employees|customers|members"
    r"|views|visits|impressions|clicks|downloads|installs|requests|calls|messages|emails"
    r"|tickets|points|votes|likes|steps|miles|km|meters|feet|lbs|kg|usd|eur|gbp|dollars)\b)",
    re.IGNORECASE,
)


def quantity_follows(text: str, end: int) -> bool:
    """True when the number ending at `end` is followed by a unit or a counted noun."""
    return _QUANTITY_AFTER.match(text, end) is not None


@dataclass
class KeywordHits:
    """Keyword and label occurrences in one text, ready for proximity questions."""

    # rule index -> (starts, ends), sorted by start
    keywords: dict[int, tuple[list[int], list[int]]]
    # every label or keyword occurrence: (end, owners); owners empty for unrelated labels
    labels: list[tuple[int, frozenset[int]]]
    label_ends: list[int]
    atoms: set[int]
    # rule index -> running maximum of its keyword ends, built on first use by `near`
    _reaches: dict[int, list[int]] | None = field(default=None, repr=False)

    def near(self, rule: int, start: int, end: int) -> int | None:
        """Distance from [start, end) to the closest keyword of `rule` in the window.

        Two bisections, whatever the number of keywords around: the first keyword starting
        at or after `end`, and of those starting before it the one reaching furthest (a
        running maximum of the ends), so text dense with keywords costs no more per match.
        """
        found = self.keywords.get(rule)
        if not found:
            return None
        starts, ends = found
        after = bisect_left(starts, end)
        best = starts[after] - end if after < len(starts) else PROXIMITY + 1
        if after:
            if self._reaches is None:
                self._reaches = {}
            reaches = self._reaches.get(rule)
            if reaches is None:
                reaches = self._reaches[rule] = list(accumulate(ends, max))
            best = min(best, max(0, start - reaches[after - 1]))
        return best if best <= PROXIMITY else None

    def labelled_elsewhere(self, rule: int, start: int) -> bool:
        """True when the label right before `start` names something other than `rule`."""
        index = bisect_right(self.label_ends, start) - 1
        if index < 0:
            return False
        label_end, owners = self.labels[index]
        # Labels ending at the same place are merged: any of them naming `rule` keeps it.
        return start - label_end <= LABEL_REACH and rule not in owners


class KeywordIndex:
    """One automaton for every rule's keywords and atoms and the unrelated labels."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        keyword_rules: dict[str, set[int]] = {}
        # Keywords that count only as written (`NAS`, not Portuguese "nas"): spelling -> rules
        cased_rules: dict[str, dict[str, set[int]]] = {}
        atom_rules: dict[str, set[int]] = {}
        for index, rule in enumerate(rules):
            for keyword in rule.keywords:
                for spelling in spellings(keyword):
                    keyword_rules.setdefault(spelling, set()).add(index)
            for keyword in rule.cased_keywords:
                as_written = cased_rules.setdefault(keyword.lower(), {})
                as_written.setdefault(keyword, set()).add(index)
            for atom in rule.atoms:
                atom_rules.setdefault(atom.lower(), set()).add(index)
        labels = {spelling for label in UNRELATED_LABELS for spelling in spellings(label)}
        words = {*keyword_rules, *cased_rules, *atom_rules, *labels}
        too_long = sorted(word for word in words if len(word) > LONGEST_KEYWORD)
        if too_long:
            raise ValueError(f"keywords longer than {LONGEST_KEYWORD} characters: {too_long}")
        self._automaton = ahocorasick.Automaton()
        # Without the atoms: short fragments like "ey" hit everywhere, and only the
        # pure-Python engine's prefilter reads them.
        self._words = ahocorasick.Automaton()
        for word in words:
            # (length, starts at a word boundary, ends at one, keyword of rules, is a label
            # (of those rules, or unrelated), atom of rules, (spelling, rules) counting only
            # as written, an unrelated label)
            owners = frozenset(keyword_rules.get(word, ()))
            cased = tuple(
                (spelling, frozenset(of)) for spelling, of in cased_rules.get(word, {}).items()
            )
            unrelated = word in labels
            is_label = bool(owners) or bool(cased) or unrelated
            atoms = tuple(atom_rules.get(word, ()))
            left, right = _bounded(word)
            entry = (len(word), left, right, owners, is_label, atoms, cased, unrelated)
            self._automaton.add_word(word, entry)
            if is_label:
                self._words.add_word(word, entry)
        self._automaton.make_automaton()
        self._words.make_automaton()

    def scan(
        self, text: str, windows: Sequence[tuple[int, int]] | None = None, *, atoms: bool = True
    ) -> KeywordHits:
        """Occurrences in `text`, or only inside `windows` ((start, end), sorted, disjoint):
        positions are always offsets in `text`. `atoms=False`: keywords and labels only."""
        keywords: dict[int, tuple[list[int], list[int]]] = {}
        labels: dict[int, frozenset[int]] = {}
        found_atoms: set[int] = set()
        automaton = self._automaton if atoms else self._words
        size = len(text)
        for low, high in windows if windows is not None else ((0, size),):
            lowered = lower_same_length(text[low:high])
            for last, found in automaton.iter(lowered):
                length, left, right, owners, is_label, atom_rules, cased, unrelated = found
                if atom_rules:
                    found_atoms.update(atom_rules)
                if not is_label:
                    continue
                end = low + last + 1
                start = end - length
                # Whole words only: "aba" is not in "database", "exp" not in "expense"
                # (`word_edge`, written out: this runs for every occurrence).
                if (
                    left
                    and start > 0
                    and text[start - 1].isalnum()
                    and not (text[start - 1].islower() and text[start].isupper())
                ) or (
                    right
                    and end < size
                    and text[end].isalnum()
                    and not (text[end - 1].islower() and text[end].isupper())
                ):
                    continue
                if cased:
                    written = text[start:end]
                    as_written = [rules for spelling, rules in cased if written == spelling]
                    if not (as_written or owners or unrelated):
                        continue  # only a keyword as written, and not written so
                    owners = owners.union(*as_written)
                for rule in owners:
                    starts, ends = keywords.setdefault(rule, ([], []))
                    starts.append(start)
                    ends.append(end)
                labels[end] = labels[end] | owners if end in labels else owners
        for starts, ends in keywords.values():
            if any(a > b for a, b in pairwise(starts)):
                pairs = sorted(zip(starts, ends, strict=True))
                starts[:] = [pair[0] for pair in pairs]
                ends[:] = [pair[1] for pair in pairs]
        ordered = sorted(labels.items())
        return KeywordHits(keywords, ordered, [end for end, _ in ordered], found_atoms)


def windows_around(spans: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The text a keyword must lie in to support any of `spans`, merged into few windows."""
    reach = PROXIMITY + LONGEST_KEYWORD
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        low, high = max(0, start - reach), min(size, end + reach)
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


# Words (of letters) written with `_` or `-` between them, as in code and settings.
_WORD_GAP = re.compile(r"(?<=[^\W\d_])[ _-](?=[^\W\d_])")


def spellings(keyword: str) -> tuple[str, ...]:
    """A keyword in lower case as it is also written: its words joined by `_` and by `-`
    (`account key`, `account_key`, `account-key`), and with `'` or the typographic
    apostrophe U+2019 that mail editors put in its place (`d'assurance`)."""
    lowered = keyword.lower()
    forms = [lowered]
    if "'" in lowered or "\u2019" in lowered:
        forms = [lowered.replace("\u2019", "'"), lowered.replace("'", "\u2019")]
    if _WORD_GAP.search(lowered):
        forms = [_WORD_GAP.sub(gap, form) for form in forms for gap in (" ", "_", "-")]
    return tuple(dict.fromkeys(forms))


def word_edge(text: str, index: int) -> bool:
    """Whether a word may start or end at `index`: not between two letters or digits, unless
    the case turns there as in camelCase (`storageAccountKey`, `getSsn`)."""
    if index <= 0 or index >= len(text):
        return True
    before, after = text[index - 1], text[index]
    return not (before.isalnum() and after.isalnum()) or (before.islower() and after.isupper())


def lower_same_length(text: str) -> str:
    """Lower case with every offset kept (a few characters, like U+0130, lower to two)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _bounded(word: str) -> tuple[bool, bool]:
    """Whether the word must start / end at a word boundary (only where it is alphanumeric)."""
    return word[0].isalnum(), word[-1].isalnum()
