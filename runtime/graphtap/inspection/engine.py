"""Matching: which rules fired, exact spans, validation, keywords, confidence.

Two engines give the same answers. The Hyperscan (Vectorscan) engine scans the text once with
a database of every rule and runs `regex` only for the rules that fired, so a clean message
costs one scan; number rules are compiled exactly and say where their matches end, so `regex`
looks only there. The pure-Python engine, chosen when `hyperscan` cannot be imported, decides
with the keyword automaton's literal atoms instead, runs every rule that has none and finds
number candidates in one pass. After that both share one path: `regex` spans, validators, the
placeholder filter, keywords near the matches, confidence, overlaps.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import regex

from graphtap.inspection import compiled, validators
from graphtap.inspection.keywords import (
    LONGEST_KEYWORD,
    PROXIMITY,
    KeywordHits,
    KeywordIndex,
    quantity_follows,
    spellings,
    windows_around,
    word_edge,
)
from graphtap.inspection.rules import Evidence, Rule
from graphtap.inspection.rules.base import (
    HYPERSCAN_NUMBER_AFTER,
    HYPERSCAN_NUMBER_BEFORE,
    INSIDE_IBAN,
    NUMBER_AFTER,
    NUMBER_BEFORE,
)

EngineName = Literal["auto", "hyperscan", "python"]

_log = logging.getLogger(__name__)

hyperscan: ModuleType | None
try:
    import hyperscan
except ImportError:  # the wheel exists for x86-64 only; elsewhere the Python engine runs
    hyperscan = None


def hyperscan_available() -> bool:
    return hyperscan is not None


# Candidates and matches are built for every match of every message: plain slotted records
# (a frozen dataclass's constructor costs four times more), never changed once built.


@dataclass(slots=True)
class Candidate:
    rule: int  # index into the engine's rules: also the tie-break priority
    start: int
    end: int
    value: str
    confidence: int
    distance: int  # to the nearest supporting keyword; PROXIMITY + 1 when none


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
# A standalone number (see `Rule.numeric`): where number rules can match at all.
_NUMBER_RUN = re.compile(NUMBER_BEFORE + r"[0-9A-Z][0-9 \-]{4,}[0-9]", re.ASCII)
_CONTEXT_REACH = 200
# How far before a match its `not_after` context may start: an IBAN's country code lies at
# most 40 characters before the digits read after it (every number match looks back).
_NOT_AFTER_REACH = 48
# A number run longer than this holds many numbers: searched rule by rule (`_numeric_matches`).
_LONG_RUN = 64


class Engine:
    """The shared path after the prefilter; subclasses decide which rules to run."""

    name: str = ""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._keywords = KeywordIndex(self.rules)
        self._validated: dict[tuple[int, str], str | None] = {}  # per message, see `_accept`
        self._patterns = [_compile(rule) for rule in self.rules]
        self._has_value_group = ["v" in pattern.groupindex for pattern in self._patterns]
        self._shortest_number = [rule.number_length[0] for rule in self.rules]
        self._extra = [
            regex.compile(rule.extra_evidence, regex.ASCII) if rule.extra_evidence else None
            for rule in self.rules
        ]
        # No number is read out of an IBAN's digits, unless a rule says otherwise.
        befores = [rule.not_after or (INSIDE_IBAN if rule.numeric else "") for rule in self.rules]
        self._not_after = [
            regex.compile(f"(?:{before})\\Z", regex.ASCII) if before else None for before in befores
        ]

    def find(self, text: str) -> list[Candidate]:
        raise NotImplementedError

    def _matches(
        self,
        text: str,
        fired: Collection[int],
        number_ends: Mapping[int, list[int]] | None = None,
    ) -> list[_Match]:
        """Validated, non-placeholder matches of the fired rules: no keywords needed yet.

        `number_ends`: where Hyperscan saw each numeric rule's matches end (offsets in `text`),
        so only those places are searched; without it one pass finds every number run.
        """
        found: list[_Match] = []
        numeric: list[int] = []
        self._validated = {}
        for index in sorted(fired):
            if not self.rules[index].numeric:
                for match in self._patterns[index].finditer(text):
                    self._accept(text, index, match, found)
            elif number_ends is not None:
                self._matches_near(text, index, number_ends[index], found)
            else:
                numeric.append(index)
        if numeric:
            self._numeric_matches(text, numeric, found)
        self._validated = {}  # values of the message: not kept for the next one
        return found

    def _matches_near(self, text: str, index: int, ends: list[int], found: list[_Match]) -> None:
        """`finditer` limited to windows that hold every match: each ends at one of `ends`
        and is at most the rule's longest number long (plus the boundary characters)."""
        reach, size = self.rules[index].number_length[1] + 2, len(text)
        pattern = self._patterns[index]
        low, high = max(0, ends[0] - reach), min(size, ends[0] + 2)
        for end in ends[1:]:
            if end - reach <= high:
                high = min(size, end + 2)
                continue
            for match in pattern.finditer(text, low, high):
                self._accept(text, index, match, found)
            low, high = max(0, end - reach), min(size, end + 2)
        for match in pattern.finditer(text, low, high):
            self._accept(text, index, match, found)

    def _matches_within(
        self, text: str, index: int, windows: list[tuple[int, int]], found: list[_Match]
    ) -> None:
        """`finditer` limited to `windows` (sorted, disjoint, each ending at whitespace)."""
        pattern = self._patterns[index]
        for low, high in windows:
            for match in pattern.finditer(text, low, high):
                self._accept(text, index, match, found)

    def _numeric_matches(self, text: str, rules: list[int], found: list[_Match]) -> None:
        """What `finditer` would find for the number rules, in one pass over the text.

        Every number rule's match starts where a standalone number may start and runs over
        digits, spaces and dashes, so it lies inside one run of `_NUMBER_RUN`, starting at the
        run's start or right after a space in it. Trying the rules only there (non-overlapping
        per rule, as `finditer` is) replaces five scans of the whole text with one. A long run
        (thousands of numbers in a row) is searched rule by rule instead, at C speed.
        """
        last_end = dict.fromkeys(rules, -1)
        shortest = self._shortest_number
        size = len(text)
        for run in _NUMBER_RUN.finditer(text):
            low, high = run.span()
            if high - low > _LONG_RUN:
                # Many numbers in a row: `finditer` over the run tries the same starts in C
                # (the others fail NUMBER_BEFORE). A match starts in the run but may end past
                # it (a letter the run stops at: `2A` in a French NIR, a DNI's check letter),
                # with NUMBER_AFTER's two characters beyond.
                for index in rules:
                    reach = min(size, high + self.rules[index].number_length[1] + 2)
                    for match in self._patterns[index].finditer(text, low, reach):
                        if match.start() >= high:
                            break  # the next run's
                        last_end[index] = match.end()
                        self._accept(text, index, match, found)
                continue
            starts = [low]
            space = text.find(" ", low, high)
            while space >= 0:
                starts.append(space + 1)
                space = text.find(" ", space + 1, high)
            for index in rules:
                pattern = self._patterns[index]
                for start in starts:
                    if start < last_end[index] or high - start < shortest[index]:
                        continue
                    match = pattern.match(text, start)
                    if match is not None:
                        last_end[index] = match.end()
                        self._accept(text, index, match, found)

    def _accept(self, text: str, index: int, match: Any, found: list[_Match]) -> None:
        rule = self.rules[index]
        start, raw_end = match.span("v") if self._has_value_group[index] else match.span()
        raw = text[start:raw_end]
        # A value repeated thousands of times is checked once per message.
        key = (index, raw)
        value = self._validated.get(key, _UNCHECKED)
        if value is _UNCHECKED:
            value = None
            for trimmed in rule.trims(raw):
                if trimmed and rule.validate(trimmed):
                    value = trimmed
                    break
            self._validated[key] = value
        if value is None:
            return
        end = start + len(value)
        if rule.placeholders:
            context = _line_around(text, start, end) if rule.context_matters else ""
            if validators.placeholder(value, context):
                return
        found.append(_Match(index, start, end, value, match.group()))

    def _score(self, text: str, matches: list[_Match], hits: KeywordHits) -> list[Candidate]:
        candidates: list[Candidate] = []
        for found in matches:
            index, start, end = found.rule, found.start, found.end
            rule = self.rules[index]
            if rule.labelled_elsewhere_excludes and (
                hits.labelled_elsewhere(index, start) or quantity_follows(text, end)
            ):
                continue
            before = self._not_after[index]
            if before is not None and before.search(text, max(0, start - _NOT_AFTER_REACH), start):
                continue
            distance = hits.near(index, start, end)
            if distance is not None and rule.proximity is not None and distance > rule.proximity:
                distance = None  # a custom type's narrower window
            extra = False
            pattern = self._extra[index]
            if pattern is not None and distance is None:
                window = pattern.search(text, max(0, start - PROXIMITY), end + PROXIMITY)
                extra = window is not None
            evidence = Evidence(found.text, found.value, distance is not None, extra)
            confidence = rule.score(evidence)
            if confidence is None:
                continue
            nearest = PROXIMITY + 1 if distance is None else distance
            candidates.append(Candidate(index, start, end, found.value, confidence, nearest))
        return _resolve_overlaps(candidates) if len(candidates) > 1 else candidates


_UNCHECKED = ""  # never a valid value: validators reject the empty string


@dataclass(slots=True)
class _Match:
    rule: int
    start: int
    end: int
    value: str
    text: str  # the whole match, context included


class PythonEngine(Engine):
    """Keyword-automaton prefilter plus `regex`: no native dependency beyond the automaton."""

    name = "python"

    def __init__(self, rules: Sequence[Rule]) -> None:
        super().__init__(rules)
        self._always = frozenset(i for i, rule in enumerate(self.rules) if not rule.atoms)

    def find(self, text: str) -> list[Candidate]:
        hits = self._keywords.scan(text)
        fired = {
            index
            for index in self._always | hits.atoms
            if not self.rules[index].requires_keyword or index in hits.keywords
        }
        matches = self._matches(text, fired)
        return self._score(text, matches, hits) if matches else []


class HyperscanEngine(Engine):
    """One Hyperscan database over all rules decides which fired; `regex` then finds spans.

    Patterns compile in prefilter mode (Hyperscan may fire where `regex` then finds nothing,
    never the reverse) except number rules, which compile exactly; so both engines report
    the same findings. Not thread-safe (one scratch space per engine): build one per worker.
    """

    name = "hyperscan"

    def __init__(self, rules: Sequence[Rule]) -> None:
        if hyperscan is None:
            raise RuntimeError("the hyperscan engine needs the `hyperscan` package (x86-64 wheels)")
        super().__init__(rules)
        self._database = _hyperscan_database(self.rules)
        self._scratch = hyperscan.Scratch(self._database)
        self._fired: set[int] = set()
        self._ends: dict[int, list[int]] = {}
        count = len(self.rules)
        # Rules that need a keyword are in the database only as gates, their keywords: they
        # run only near where one of those is (no digit scan for them over every message).
        # Two gates per rule: keywords ending in a letter or digit, then the others.
        self._keyword_gates = {
            index: (count + index, 2 * count + index)
            for index, rule in enumerate(self.rules)
            if rule.requires_keyword
        }
        # Numeric rules report every match end (their boundaries are exact in Hyperscan),
        # gates every keyword end.
        self._numeric = frozenset(
            [i for i, rule in enumerate(self.rules) if rule.numeric and not rule.requires_keyword]
            + [gate for pair in self._keyword_gates.values() for gate in pair]
        )

    def _on_match(self, rule: int, start: int, end: int, flags: int, context: object) -> None:
        ends = self._ends.get(rule)
        if ends is not None:
            ends.append(end)
        elif rule in self._numeric:
            self._ends[rule] = [end]
            self._fired.add(rule)
        else:
            self._fired.add(rule)

    def find(self, text: str) -> list[Candidate]:
        fired: set[int] = set()
        ends: dict[int, list[int]] = {}
        self._fired, self._ends = fired, ends
        # (A lone surrogate, which no UTF-8 holds, is read as one unknown character.)
        self._database.scan(
            text.encode("utf-8", "replace"),
            match_event_handler=self._on_match,
            scratch=self._scratch,
        )
        if not fired:
            return []
        gates = self._keyword_gates
        runnable = [index for index in fired if index < len(self.rules)]
        gated = [index for index, (word, other) in gates.items() if word in fired or other in fired]
        # Match ends are byte offsets: they are character offsets only in ASCII text.
        if not text.isascii():
            matches = self._matches(text, runnable + gated, None)
        else:
            # Number rules and other short ones (`Rule.longest`) are searched near their
            # keywords only; any other rule with a keyword gate, over the whole text, as the
            # Python engine does: a custom type's match may be longer than a window allows.
            windowed = [index for index in gated if _bounded(self.rules[index])]
            anywhere = [index for index in gated if not _bounded(self.rules[index])]
            matches = self._matches(text, runnable + anywhere, ends)
            for index in windowed:
                word, other = gates[index]
                # A keyword ending in a letter or digit ends a word ("sin" in "using" is none).
                keyword_ends = [e for e in ends.get(word, ()) if word_edge(text, e)]
                keyword_ends += ends.get(other, ())
                if keyword_ends:
                    windows = _keyword_windows(text, sorted(keyword_ends))
                    self._matches_within(text, index, windows, matches)
        if not matches:
            return []
        # Keywords only matter near a match: scan just those windows, not the whole text.
        windows = windows_around([(m.start, m.end) for m in matches], len(text))
        return self._score(text, matches, self._keywords.scan(text, windows, atoms=False))


def build_engine(rules: Sequence[Rule], name: EngineName = "auto") -> Engine:
    """ "auto" is Hyperscan when it is importable and runs on this CPU, else pure Python."""
    if name == "python" or (name == "auto" and hyperscan is None):
        return PythonEngine(rules)
    if name == "hyperscan":
        return HyperscanEngine(rules)
    if name == "auto":
        assert hyperscan is not None
        try:
            return HyperscanEngine(rules)
        except hyperscan.ArchitectureError:
            _log.warning("hyperscan does not support this CPU; using the pure-Python engine")
            return PythonEngine(rules)
    raise ValueError(f"engine must be 'auto', 'hyperscan' or 'python', not {name!r}")


def _compile(rule: Rule) -> Any:
    flags = regex.ASCII | regex.VERSION0 | (regex.IGNORECASE if rule.ignore_case else 0)
    return regex.compile(rule.pattern, flags)


def _hyperscan_database(rules: Sequence[Rule]) -> Any:
    assert hyperscan is not None
    expressions, flags, ids = [], [], []
    for index, rule in enumerate(rules):
        if rule.requires_keyword:
            if (rule.numeric and rule.number_length[1] > _GATED_REACH) or (
                rule.longest is not None and rule.longest > _GATED_REACH
            ):
                raise ValueError(f"{rule.type}: matches longer than {_GATED_REACH} characters")
            continue  # runs only where its keyword gate fires (below): no digit scan for it
        ids.append(index)
        if rule.numeric:
            flag = 0
            # Exact: the number boundaries are written as consumed characters.
            if NUMBER_BEFORE not in rule.pattern or NUMBER_AFTER not in rule.pattern:
                raise ValueError(f"numeric rule {rule.type} must use NUMBER_BEFORE and _AFTER")
            pattern = rule.pattern.replace(NUMBER_BEFORE, HYPERSCAN_NUMBER_BEFORE)
            pattern = pattern.replace(NUMBER_AFTER, HYPERSCAN_NUMBER_AFTER)
        else:
            pattern = rule.hyperscan_pattern or rule.pattern
            flag = _PREFILTER_FLAGS
        if rule.ignore_case:
            flag |= hyperscan.HS_FLAG_CASELESS
        expressions.append(_NAMED_GROUP.sub("(?:", pattern).encode("ascii"))
        flags.append(flag)
    # Keyword gates: a rule's keywords as literals (boundaries are checked on the ends found:
    # as patterns they take Hyperscan ten times longer to compile); every occurrence is
    # reported, as the rule runs only near them. Keywords ending in a letter or digit, whose
    # end must end a word, have their own gate.
    for index, rule in enumerate(rules):
        if not rule.requires_keyword:
            continue
        # (Keywords counting only as written are in a gate in any case: a superset.)
        keywords = rule.keywords + rule.cased_keywords
        word = [keyword for keyword in keywords if keyword[-1].isalnum()]
        other = [keyword for keyword in keywords if not keyword[-1].isalnum()]
        for gate, group in ((len(rules) + index, word), (2 * len(rules) + index, other)):
            if group:
                literals = sorted({s for k in group for w in spellings(k) for s in _cased(w)})
                expressions.append("|".join(map(re.escape, literals)).encode())
                flags.append(hyperscan.HS_FLAG_CASELESS)
                ids.append(gate)
    return compiled.database(hyperscan, expressions, flags, ids)


# Prefilter rules read characters, as `regex` does: in UTF-8 mode `.` or `[^x]` is one
# character of non-ASCII text, not one byte of it.
_PREFILTER_FLAGS = (
    0
    if hyperscan is None
    else hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_UTF8
)


def _cased(keyword: str) -> tuple[str, ...]:
    """A lower-case keyword as a gate's literals: Hyperscan folds the case of ASCII letters
    only, so a keyword with others (`dowód osobisty`) is also given in upper case."""
    if keyword.isascii():
        return (keyword,)
    return (keyword, keyword.upper())


def _bounded(rule: Rule) -> bool:
    """Whether every match of the rule is short: then it is searched near its keywords."""
    return rule.numeric or rule.longest is not None


# The longest match of a rule that needs a keyword (a bank account number, 17 digits and
# separators, is the longest today).
_GATED_REACH = 64
_WHITESPACE = re.compile(r"\s")


def _keyword_windows(text: str, keyword_ends: list[int]) -> list[tuple[int, int]]:
    """Where a match within PROXIMITY of a keyword ending at one of `keyword_ends` (a gate's
    ends: the keyword's own end or one boundary character past it) can lie. Each window ends
    at whitespace or the end of the text, so no number is cut short at its edge; a match cut
    at the start is no match (the patterns' lookbehinds see the characters before)."""
    size = len(text)
    windows: list[tuple[int, int]] = []
    # The ends are sorted, so each search for whitespace starts past the previous one's
    # result: one pass over the text however many keywords it holds.
    space = -1
    for end in keyword_ends:
        low = max(0, end - LONGEST_KEYWORD - 2 - PROXIMITY - _GATED_REACH)
        high = end + PROXIMITY + _GATED_REACH
        if high < size:
            if space < high:
                found = _WHITESPACE.search(text, high)
                space = found.start() if found else size
            high = space
        else:
            high = size
        if windows and low <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], high))
        else:
            windows.append((low, high))
    return windows


def hyperscan_compiles(pattern: str, ignore_case: bool = False) -> str | None:
    """Why Hyperscan cannot compile `pattern` as a prefilter, or None (also when the
    package is absent: the pure-Python engine runs anything `regex` compiles)."""
    if hyperscan is None:
        return None
    flags = _PREFILTER_FLAGS
    if ignore_case:
        flags |= hyperscan.HS_FLAG_CASELESS
    database = hyperscan.Database()
    try:
        database.compile(
            expressions=[_NAMED_GROUP.sub("(?:", pattern).encode("ascii")],
            ids=[0],
            elements=1,
            flags=[flags],
        )
    except hyperscan.error as exc:
        return str(exc)
    return None


def _line_around(text: str, start: int, end: int) -> str:
    left = text.rfind("\n", max(0, start - _CONTEXT_REACH), start) + 1
    right = text.find("\n", end, end + _CONTEXT_REACH)
    return text[max(left, start - _CONTEXT_REACH) : right if right >= 0 else end + _CONTEXT_REACH]


def _resolve_overlaps(candidates: list[Candidate]) -> list[Candidate]:
    """A match inside a longer one is part of that value (`793325` in `3462 793325 60708`)
    and drops out. Where types still claim overlapping characters, the most confident wins;
    then the earlier (more specific) rule; then the one whose keyword is nearer.

    Only candidates that overlap can affect each other, so the work goes cluster by cluster
    (runs of candidates joined by overlaps): a message repeating one value thousands of times
    costs as many one-candidate clusters, not every candidate compared with every other.
    """
    if len(candidates) <= _SMALL_CLUSTER:  # the usual message: a few candidates
        return _resolve_pairwise(candidates)
    ordered = sorted(
        range(len(candidates)), key=lambda i: (candidates[i].start, -candidates[i].end)
    )
    kept: list[Candidate] = []
    cluster: list[int] = []
    reach = -1
    for index in ordered:
        candidate = candidates[index]
        if candidate.start >= reach and cluster:
            _resolve_cluster(candidates, cluster, kept)
            cluster = []
        cluster.append(index)
        reach = candidate.end if len(cluster) == 1 else max(reach, candidate.end)
    _resolve_cluster(candidates, cluster, kept)
    return kept


# Up to this many overlapping candidates, comparing each with each is the quickest way.
_SMALL_CLUSTER = 24


def _resolve_cluster(
    candidates: list[Candidate], cluster: list[int], kept: list[Candidate]
) -> None:
    """Append the survivors of one cluster (indices in start order) to `kept`, by start."""
    if len(cluster) == 1:
        kept.append(candidates[cluster[0]])
    elif len(cluster) <= _SMALL_CLUSTER:
        kept.extend(_resolve_pairwise([candidates[i] for i in sorted(cluster)]))
    else:
        kept.extend(_resolve_swept(candidates, cluster))


def _resolve_pairwise(candidates: list[Candidate]) -> list[Candidate]:
    """The rule itself, each candidate against each other: for small clusters."""
    whole = [
        c
        for c in candidates
        if not any(
            o.start <= c.start and c.end <= o.end and o.end - o.start > c.end - c.start
            for o in candidates
        )
    ]
    ranked = sorted(whole, key=lambda c: (-c.confidence, c.rule, c.distance, c.start))
    chosen: list[Candidate] = []
    for candidate in ranked:
        if all(candidate.end <= other.start or other.end <= candidate.start for other in chosen):
            chosen.append(candidate)
    chosen.sort(key=lambda c: c.start)
    return chosen


def _resolve_swept(candidates: list[Candidate], cluster: list[int]) -> list[Candidate]:
    """`_resolve_pairwise` in O(n log n) for a large cluster (`cluster` sorted by start, then
    longest first).

    Containment: a candidate is inside a longer one exactly when an earlier-starting one
    reaches at least its end, or one starting with it reaches further. What survives has
    starts and ends rising together, so the candidates overlapping any one of them form a
    contiguous range of that order, found by bisection; a Fenwick tree of the chosen
    positions answers whether a chosen one lies in that range.
    """
    whole: list[int] = []
    reach_before = -1
    position = 0
    while position < len(cluster):
        start = candidates[cluster[position]].start
        longest = candidates[cluster[position]].end
        group_end = position
        while group_end < len(cluster) and candidates[cluster[group_end]].start == start:
            end = candidates[cluster[group_end]].end
            if reach_before < end and end == longest:
                whole.append(cluster[group_end])
            group_end += 1
        reach_before = max(reach_before, longest)
        position = group_end
    starts = [candidates[i].start for i in whole]
    ends = [candidates[i].end for i in whole]
    size = len(whole)
    tree = [-1] * (size + 1)  # prefix maxima of chosen positions, 1-based
    ranked = sorted(
        range(size),
        key=lambda k: (
            -candidates[whole[k]].confidence,
            candidates[whole[k]].rule,
            candidates[whole[k]].distance,
            starts[k],
            whole[k],
        ),
    )
    chosen: list[int] = []
    for k in ranked:
        low = bisect_right(ends, starts[k])  # the first that ends after this one starts
        high = bisect_left(starts, ends[k]) - 1  # the last that starts before this one ends
        node, latest = high + 1, -1
        while node > 0:
            latest = max(latest, tree[node])
            node -= node & -node
        if latest >= low:
            continue  # a chosen candidate overlaps this one
        chosen.append(k)
        node = k + 1
        while node <= size:
            if tree[node] < k:
                tree[node] = k
            node += node & -node
    chosen.sort()
    return [candidates[whole[k]] for k in chosen]
