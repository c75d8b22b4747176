"""Where the HTML tree builder puts the text it meets between the tags of a table.

Text inside a table but outside its cells (a line mark between two cells, a stray word) is
not kept where the source has it: the tree builder moves it in front of the table ("foster
parenting"), unless it is only white space. `foster` does the same to markup already split
into text and tags, for tables made of the usual table tags, so such markup reads as the
parser reads it without building a document. It gives up where the tree builder does more
(an element between rows, a table directly inside a table), and the parser reads those.
"""

from __future__ import annotations

import html as html_entities
import re
from itertools import repeat

_SECTIONS = ("tbody", "thead", "tfoot")
_CELLS = ("td", "th")
_NAMES = ("table", "tr", *_CELLS, *_SECTIONS)
# Tag names as the tokens give them: start tags bare, end tags with their slash.
TABLE_TAGS = frozenset([*_NAMES, *(f"/{name}" for name in _NAMES)])
_HTML_SPACE = "\t\n\f\r "
_MARK = "\x01"  # the line mark (see `text`), the usual run of text between cells

# Insertion modes inside one table ("in table", "in table body", "in row", "in cell") and
# what that table has open: (mode, section, cell), "" for none.
_TABLE, _SECTION, _ROW, _CELL = range(4)
_State = tuple[int, str, str]
_START: _State = (_TABLE, "", "")
# What a tag does to the table it is met in.
_STAY, _OPEN, _CLOSE, _GIVE_UP = range(4)


def _after(state: _State, name: str) -> tuple[_State, int]:
    """The state after one table tag, as the tree builder's insertion modes have it (a tag
    that closes the cell, row or section is read again by the mode it returns to)."""
    mode, section, cell = state
    while True:
        if mode == _CELL:
            if name == "table":
                return (mode, section, cell), _OPEN  # a table inside the cell
            if name in ("/td", "/th"):  # closes the cell when it names it, else ignored
                return ((_ROW, section, "") if name[1:] == cell else (mode, section, cell)), _STAY
            if name in ("/tbody", "/thead", "/tfoot") and name[1:] != section:
                return (mode, section, cell), _STAY
            mode, cell = _ROW, ""  # any other table tag closes the cell first
            continue
        if name == "table":
            return (mode, section, cell), _GIVE_UP  # closes this table and opens another
        if mode == _ROW:
            if name in _CELLS:
                return (_CELL, section, name), _STAY
            if name == "/tr":
                return (_SECTION, section, ""), _STAY
            if name in ("/td", "/th") or (name[1:] in _SECTIONS and name[1:] != section):
                return (mode, section, cell), _STAY
            mode = _SECTION  # closes the row first
            continue
        if mode == _SECTION:
            if name == "tr":
                return (_ROW, section, ""), _STAY
            if name in _CELLS:
                mode = _ROW  # a row is implied
                continue
            if name in ("/tr", "/td", "/th"):
                return (mode, section, cell), _STAY
            if name[1:] in _SECTIONS:
                return ((_TABLE, "", "") if name[1:] == section else (mode, section, cell)), _STAY
            mode, section = _TABLE, ""  # closes the section first
            continue
        if name in ("tr", *_CELLS):
            mode, section = _SECTION, "tbody"  # a body is implied
            continue
        if name in _SECTIONS:
            return (_SECTION, name, ""), _STAY
        if name == "/table":
            return (mode, section, cell), _CLOSE
        return (mode, section, cell), _STAY  # other end tags are ignored here


_STATES: list[_State] = [
    _START,
    *((mode, section, "") for mode in (_SECTION, _ROW) for section in _SECTIONS),
    *((_CELL, section, cell) for section in _SECTIONS for cell in _CELLS),
]
# The same as numbers, cells last: a state below `_IN_CELLS` has text between cells.
_IN_CELLS = _STATES.index((_CELL, _SECTIONS[0], _CELLS[0]))
_STEPS: list[dict[str, tuple[int, int]]] = [
    {
        name: (_STATES.index(after), effect)
        for name in TABLE_TAGS
        for after, effect in [_after(state, name)]
    }
    for state in _STATES
]
_OUTSIDE = -1  # in no table
_OPENED = _STATES.index(_START)  # right after `<table>`


def foster(parts: list[str], names: list[str | None]) -> bool:
    """Move the text the tree builder moves out of tables in front of them, in place.

    `parts`: text and tags alternating (`text, tag, text, ..., text`), each tag already
    replaced by what it leaves in the text (a line mark or nothing); `names`: the tags' names
    (`td`, `/td`; None for an element that leaves nothing, like `style`). The text a tag
    leaves belongs to the text before it. False: markup the tree builder reads otherwise.
    `parts` may come back shorter (a table joined into one part), `names` then no longer
    matching it.
    """
    codes = "".join(map(_CODES.get, names, repeat(".")))
    if _WRITTEN_OUT.fullmatch(codes) is not None and _written_out(parts, names, codes):
        return True
    return _fostered_tag_by_tag(parts, names)


# Tables written out in full, by far the most common: rows right in the table, every row
# and cell closed, nothing between them. Tags as one letter each (others "."); then every
# run of text between cells is known without walking the tags: it starts after `<table>`,
# `<tr>`, `</tr>` or a cell's end tag and ends at the next row or cell tag (with its mark).
_CODES: dict[str | None, str] = {
    **dict.fromkeys(TABLE_TAGS, "S"),  # sections
    **{"table": "T", "/table": "t", "tr": "R", "/tr": "r"},
    **{"td": "D", "/td": "d", "th": "H", "/th": "h"},
}
_WRITTEN_OUT = re.compile(r"(?:\.|T(?:R(?:D\.*d|H\.*h)*r)*t)*")
_ONE_TABLE = re.compile(r"T[^t]*t")
# Such a table's tags as they leave the text, runs between cells bracketed: a run starts
# at `_RUN_START`, and `_RUN_END` stands for the mark that ends it.
_RUN_START, _RUN_END = "\x02", "\x03"
_BRACKETED = {
    "table": _MARK + _RUN_START,
    "tr": _RUN_END + _RUN_START,
    "/tr": _RUN_END + _RUN_START,
    "td": _RUN_END,
    "th": _RUN_END,
    "/td": _MARK + _RUN_START,
    "/th": _MARK + _RUN_START,
    "/table": _RUN_END,
}
_RUN = re.compile(f"{_RUN_START}([^{_RUN_START}{_RUN_END}]*){_RUN_END}")
_EMPTY_RUN = _RUN_START + _RUN_END


def _written_out(parts: list[str], names: list[str | None], codes: str) -> bool:
    """`foster` for tables written out in full (`codes` matches `_WRITTEN_OUT`), each table
    joined into the part of its start tag. False (nothing changed) if the text holds the
    characters that bracket runs."""
    tables = [match.span() for match in _ONE_TABLE.finditer(codes)]
    bracketed: list[str] = []
    for low, high in tables:
        region = parts[2 * low + 1 : 2 * high]  # `<table>`, text, tag, ..., `</table>`
        region[::2] = map(_BRACKETED.get, names[low:high], region[::2])  # type: ignore[arg-type]
        joined = "".join(region)
        # One ends at each row and cell start tag, each `</tr>` and the `</table>`.
        runs = 2 * codes.count("R", low, high) + codes.count("D", low, high)
        runs += codes.count("H", low, high) + 1
        if joined.count(_RUN_START) != runs or joined.count(_RUN_END) != runs:
            return False
        bracketed.append(joined)
    for (low, high), joined in zip(reversed(tables), reversed(bracketed), strict=True):
        # Usually every run is just its mark: then one replace takes them all out.
        rest = joined.replace(_EMPTY_RUN, "")
        if _RUN_START in rest:
            moved = _MARK.join(_RUN.findall(joined)) + _MARK
            rest = _RUN.sub("", joined)
        else:
            moved = _MARK * ((len(joined) - len(rest)) // 2)
        parts[2 * low + 1 : 2 * high] = [_MARK + moved + rest[1:]]
    return True


def _fostered_tag_by_tag(parts: list[str], names: list[str | None]) -> bool:
    """`foster` for any tables: the tree builder's states, tag by tag."""
    # Open tables, innermost last: (where the start tag is in `parts`, the text moved before
    # it, the state outside it).
    tables: list[tuple[int, list[str], int]] = []
    moved: list[str] = []  # the innermost table's
    state = _OUTSIDE
    previous = -1
    steps, in_cells = _STEPS, _IN_CELLS
    for index in [index for index, name in enumerate(names) if name in TABLE_TAGS]:
        if 0 <= state < in_cells:  # the text since the last table tag is between cells
            if index == previous + 1:  # one run of text, usually just a line mark
                at = 2 * index
                run = parts[at] + parts[at + 1]
                if run and (run[-1] == _MARK or not _white(run)):
                    moved.append(run)
                    parts[at] = parts[at + 1] = ""
            elif not _move(parts, names, previous, index, moved):
                return False
        previous = index
        name = names[index]
        if state == _OUTSIDE:
            if name == "table":  # other table tags outside a table are ignored
                moved = []
                tables.append((2 * index + 1, moved, state))
                state = _OPENED
            continue
        state, effect = steps[state][name]  # type: ignore[index]
        if effect == _OPEN:
            moved = []
            tables.append((2 * index + 1, moved, state))
            state = _OPENED
        elif effect == _CLOSE:
            slot, moved, state = tables.pop()
            if moved:
                parts[slot] += "".join(moved)
            moved = tables[-1][1] if tables else []
        elif effect == _GIVE_UP:
            return False
    if 0 <= state < in_cells and not _move(parts, names, previous, len(names), moved):
        return False
    for slot, left, _ in tables:  # tables the markup leaves open
        if left:
            parts[slot] += "".join(left)
    return True


def _move(
    parts: list[str], names: list[str | None], previous: int, index: int, moved: list[str]
) -> bool:
    """Take the text between tags `previous` and `index`, all between cells, out of place
    into `moved`. False when another element is there (the tree builder moves it too)."""
    if index - previous > 1 and any(names[previous + 1 : index]):
        return False
    last = len(parts) - 1
    for at in range(2 * previous + 2, 2 * index + 1, 2):
        # One run of text (the tree builder's unit here): up to the next tag, with its mark.
        run = parts[at] + parts[at + 1] if at < last else parts[at]
        if run and not _white(run):
            moved.append(run)
            parts[at] = ""
            if at < last:
                parts[at + 1] = ""
    return True


def _white(run: str) -> bool:
    """Only HTML white space, references decoded (`&Tab;`): such text stays in place."""
    if "&" in run:
        run = html_entities.unescape(run)
    return not run.strip(_HTML_SPACE)
