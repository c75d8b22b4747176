"""Just enough KQL reading to hold the stack's queries to what exists: their structure (balanced
brackets, one tabular source per statement) and every name they use (sources, columns, the
`Name` of a metric, the `Properties` keys, the fields of a dynamic value)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKENS = re.compile(
    r'(?P<comment>//[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')|(?P<other>.)',
    re.S,
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


class KqlError(ValueError):
    """A query that would not parse."""


@dataclass(frozen=True)
class Query:
    text: str
    code: str  # comments removed, every string literal replaced by `""`
    strings: tuple[str, ...]  # the string literals, in order, unquoted

    @classmethod
    def parse(cls, text: str) -> Query:
        code, strings = [], []
        for match in _TOKENS.finditer(text):
            if match.group("comment") is not None:
                continue
            if (literal := match.group("string")) is not None:
                strings.append(literal[1:-1])
                code.append('""')
            else:
                code.append(match.group("other"))
        query = cls(text, "".join(code), tuple(strings))
        query._check_brackets()
        if not query.sources():
            raise KqlError("no tabular source")
        return query

    def _check_brackets(self) -> None:
        stack: list[str] = []
        for char in self.code:
            if char in _PAIRS:
                stack.append(_PAIRS[char])
            elif char in _PAIRS.values() and (not stack or stack.pop() != char):
                raise KqlError(f"unbalanced {char!r}")
        if stack:
            raise KqlError(f"unclosed bracket, expected {stack[-1]!r}")
        if self.code.count('"') % 2:
            raise KqlError("unterminated string")

    def statements(self) -> list[str]:
        return [s.strip() for s in self.code.split(";") if s.strip()]

    def lets(self) -> dict[str, str]:
        """`let name = body;` statements: name -> body."""
        found = {}
        for statement in self.statements():
            if match := re.fullmatch(r"let\s+(\w+)\s*=\s*(.*)", statement, re.S):
                found[match.group(1)] = match.group(2)
        return found

    def sources(self) -> set[str]:
        """The tables and functions the statements start from (let names excluded)."""
        lets = self.lets()
        bodies = [*lets.values(), *(s for s in self.statements() if not s.startswith("let "))]
        sources = set()
        for body in bodies:
            body = re.sub(r"^(toscalar|materialize)\s*\(", "", body.strip())
            match = _IDENTIFIER.match(body.lstrip("( \n"))
            if match is None:
                raise KqlError(f"a statement without a source: {body[:40]!r}")
            sources.add(match.group(0))
        return sources - set(lets)

    def defined(self) -> set[str]:
        """Names the query itself gives columns or values (`Name = ...`)."""
        return set(re.findall(r"\b([A-Za-z_]\w*)\s*=(?!=)", self.code))

    def pascal_identifiers(self) -> set[str]:
        """Every PascalCase name outside strings: in these schemas, a table, a function or a
        column (KQL's own operators and functions are lowercase)."""
        code = re.sub(r"\.\s*[A-Za-z_]\w*", "", self.code)  # drop the `.field` of `x.field`
        return {name for name in _IDENTIFIER.findall(code) if name[0].isupper()}

    def fields_of(self, name: str) -> set[str]:
        """The fields read from a dynamic value: `name.field` and `name["field"]`."""
        fields = set(re.findall(rf"\b{name}\s*\.\s*([A-Za-z_]\w*)", self.code))
        bracket = re.compile(rf"\b{name}\s*\[\s*$")
        positions = [m.start() for m in re.finditer('""', self.code)]
        for position, literal in zip(positions, self.strings, strict=True):
            if bracket.search(self.code[max(0, position - 100) : position]):
                fields.add(literal)
        return fields

    def compared(self, column: str) -> set[str]:
        """The string literals `column` is compared with (`==`, `in (...)`)."""
        equal = re.compile(rf"\b{column}\s*==\s*$")
        member = re.compile(rf'\b{column}\s+in\s*\((\s*""\s*,)*\s*$')
        values = set()
        positions = [m.start() for m in re.finditer('""', self.code)]
        for position, literal in zip(positions, self.strings, strict=True):
            before = self.code[max(0, position - 300) : position]
            if equal.search(before) or member.search(before):
                values.add(literal)
        return values


def parse(text: str) -> Query:
    return Query.parse(text)
