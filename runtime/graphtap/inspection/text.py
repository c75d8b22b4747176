"""Message content to the plain text the detectors read.

Teams and Outlook bodies are HTML. A number split by inline markup (`4111 <b>1111</b> 1111
1111`) must stay one number, while paragraphs, line breaks and table cells must not run into
each other; so newlines go in at block boundaries only. Invisible characters (NBSP, zero-width
joiners, soft hyphens) and full-width digits are normalised the way a reader sees them.
"""

from __future__ import annotations

import html as html_entities
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from graphtap.inspection.tables import TABLE_TAGS, foster

# Elements whose start or end is a line boundary when rendered.
_BLOCK_NAMES = (
    "p", "div", "br", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "td", "th", "tr", "table", "hr", "section", "article", "header", "footer", "address",
    "figure", "figcaption", "caption", "form", "fieldset", "legend", "nav", "aside", "main",
    "center", "ul", "ol", "dl",
)  # fmt: skip
# Matches the `<` of a block tag, which is put back behind the mark: a constant replacement
# keeps `re.sub` in C (a function per match costs twice the time).
_BLOCK_TAG = re.compile(rf"<(?=/?(?:{'|'.join(_BLOCK_NAMES)})[\s/>])")
_BLOCK_TAG_ANY_CASE = re.compile(_BLOCK_TAG.pattern, re.IGNORECASE)  # slower; rarely needed
_UPPER_CASE_TAG = re.compile(r"</?[a-z0-9:-]*[A-Z]")  # a tag name with any capital
# A control character placed before block tags and turned into a newline. One in the source
# renders as nothing and is dropped first, so it cannot split a number into two lines.
_MARK = "\x01"
_NOT_RENDERED = re.compile(r"<(?:[sS][tTcC][yYrR]|[nN][oO][sS][cC]|[tT][eE][mM][pP])")
_NOT_RENDERED_TAGS = ["style", "script", "noscript", "template"]

# Simple markup: every `<` opens a well-formed tag of an element that the HTML tree builder
# renders in source order (no raw text, tables, foreign content, comments or doctypes), and
# the only character references are named ones. Teams bodies are almost always this; for them
# stripping the tags and decoding the references gives exactly the parser's text, without the
# cost of building a document. Anything else goes to the parser.
_HTML_SPACE = "\t\n\f\r "
_TAG_NAME = "[A-Za-z][A-Za-z0-9:-]*"
# Possessive throughout: a tokenizer reads a tag once, left to right, and so does this. An
# unclosed tag whose unquoted value holds slashes (`<a x=a/a/a/...`) could otherwise be split
# between values and bare attributes in as many ways as it has slashes, each tried to the end.
_TAG_REST = (  # attributes, with every quoting, and the end of the tag
    rf"(?:[{_HTML_SPACE}/]++[^{_HTML_SPACE}\"'<>/=]++"
    rf"(?:[{_HTML_SPACE}]*+=[{_HTML_SPACE}]*+"
    rf"(?:\"[^\"]*+\"|'[^']*+'|[^{_HTML_SPACE}\"'=<>`]++))?)*+"
    rf"[{_HTML_SPACE}/]*+>"
)
_SIMPLE_TAG = re.compile(rf"</?{_TAG_NAME}{_TAG_REST}")
_TREE_BUILDER_NAMES = (
    "html", "head", "body", "frameset", "frame", "base", "basefont", "bgsound", "link", "meta",
    "title", "style", "script", "noscript", "template", "noframes", "noembed", "iframe", "xmp",
    "plaintext", "textarea", "pre", "listing", "table", "caption", "colgroup", "col", "tbody",
    "thead", "tfoot", "tr", "td", "th", "select", "option", "optgroup", "math", "svg", "isindex",
)  # fmt: skip
_SPECIAL_TAG = re.compile(rf"</?(?:{'|'.join(_TREE_BUILDER_NAMES)})(?=[{_HTML_SPACE}/>])")
_SPECIAL_TAG_ANY_CASE = re.compile(_SPECIAL_TAG.pattern, re.IGNORECASE)
# The elements Teams and Outlook bodies are made of, none special to the tree builder, and
# what each tag leaves in the text: the mark for blocks, nothing for inline elements. A body
# with any other tag (a capital in its name, a custom or special element) is read the longer
# way; this table only decides which way is quicker, never what the text is.
_USUAL_TAGS: dict[str, str] = {
    **{name: _MARK for name in _BLOCK_NAMES if name not in _TREE_BUILDER_NAMES},
    **dict.fromkeys(
        ("a", "at", "attachment", "b", "code", "em", "emoji", "font", "i", "img", "s", "small",
         "span", "strike", "strong", "sub", "sup", "u"),
        "",
    ),
}  # fmt: skip
# The special elements usual markup may hold too, as the short path reads them: `pre` (a
# newline right after its start tag is dropped), tables (see `tables`) and `style` (raw text,
# dropped whole). Keys are names as `_TOKEN` gives them: end tags with their slash, None for
# a whole `style` element.
_SHORT_PATH_TAGS: dict[str | None, str] = {
    None: "",
    **{key: left for name, left in _USUAL_TAGS.items() for key in (name, f"/{name}")},
    **{name: _MARK if name.lstrip("/") in _BLOCK_NAMES else "" for name in TABLE_TAGS},
    "pre": _MARK,
    "/pre": _MARK,
}
_STYLE = "[sS][tT][yY][lL][eE]"
_NAME_ENDS = f"(?=[{_HTML_SPACE}/>])"
# A simple tag, its name kept with an end tag's slash; or a whole `style` element, whose raw
# text the first `</style` ends, kept as None. When that end tag is not simple, the element
# ends before it and it stays in the text: a `<` there sends the markup to the parser.
_TOKEN = re.compile(
    rf"<(?:{_STYLE}{_NAME_ENDS}{_TAG_REST}[^<]*+(?:<(?!/{_STYLE}{_NAME_ENDS})[^<]*+)*"
    rf"(?:</{_STYLE}{_NAME_ENDS}{_TAG_REST}|(?=<)|\Z)"
    rf"|(/?{_TAG_NAME})(?:>|{_TAG_REST}))"  # (most tags have no attributes: `>` first)
)
# References that decode to white space, which the parser drops before the body starts.
_WHITE_REFERENCES = ("&Tab;", "&NewLine;")
_DROPPED_FIRST = ("</", *_WHITE_REFERENCES)  # what the parser may drop before the body
# The longest markup the parser reads at once (see `_pieces`), unless it holds at most
# `_WHOLE_MAX_TAGS` tags and no long one: the work the parser does per tag grows with the
# elements open (2,048 nested elements cost it 6 ms) and per attribute with the attributes
# before it in the tag, so such a document costs a bounded time whatever its length. Up to
# `_WHOLE_MAX_CHARS` no tag can be long enough to matter (a 32 KB tag costs 40 ms), so only
# longer documents are searched for one (the search costs a tenth of their parse).
PARSE_PIECE = 12 * 1024
_WHOLE_MAX_TAGS = 2048
_WHOLE_MAX_CHARS = 32 * 1024
_LONG_TAG = re.compile(r"<[^<>]{2048}")  # (or a `<` in text before a long paragraph)
_LONG_TAG_UNMARKED = re.compile(r"<[^<>]{2047}")  # the same once a mark ends the run
_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}
# A character reference cut by a tag (`&am<b></b>p;`, which reads as "&amp;"): stripping the
# tag would join the halves into a reference the parser never saw.
_REFERENCE_CUT = re.compile(f"&[#A-Za-z0-9]*[<{_MARK}]")

_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_RUNS_OF_SPACES = re.compile(r"[ \t\f\v]{2,}")
_CARD_CONTENT_TYPES = ("application/vnd.microsoft.card.", "application/vnd.microsoft.teams.card.")


def html_to_text(html: str) -> str:
    """Rendered text of an HTML body, with newlines only where blocks start or end."""
    if "<" not in html and "&" not in html:
        return normalise(_source_whitespace(html))
    if _MARK in html:
        html = html.replace(_MARK, "")
    short = len(html) <= PARSE_PIECE // 2 or _one_parse(html, marks_to_come=True)
    text = _usual_text(html) if short else None
    if text is None:
        any_case = _UPPER_CASE_TAG.search(html) is not None
        marked = (_BLOCK_TAG_ANY_CASE if any_case else _BLOCK_TAG).sub(_MARK + "<", html)
        special = _SPECIAL_TAG_ANY_CASE if any_case else _SPECIAL_TAG
        text = _simple_text(marked, special=special)
        if text is None:
            text = _parsed_in_pieces(marked, any_case=any_case)
    # The marks are the real line boundaries.
    return normalise(_source_whitespace(text).replace(_MARK, "\n"))


def _usual_text(html: str) -> str | None:
    """`_parsed_text` of markup whose tags are all `_SHORT_PATH_TAGS`, marks included, in
    one pass over the body and a walk over its table tags; None for anything else."""
    body = _body_start(html)
    if body is None:
        return None
    parts = _TOKEN.split(body)
    names = parts[1::2]
    try:
        parts[1::2] = map(_SHORT_PATH_TAGS.__getitem__, names)
    except KeyError:
        return None
    if names:
        if names[0] is None and not parts[0] and not _head_dropped(parts, names):
            return None
        if "<pre" in body and not _pre_newlines_dropped(parts, names):
            return None
        if "<table" in body and not foster(parts, names):
            return None
    return _decoded("".join(parts))


def _one_parse(html: str, *, marks_to_come: bool = False) -> bool:
    """Whether `_parsed_in_pieces` reads `html` in one parse. `marks_to_come`: `html` before
    its line marks go in (each adds a character before a `<`), as the short path asks: it
    reads markup as one parse does, so it takes only what one parse would read."""
    size = len(html)
    if size <= PARSE_PIECE and not marks_to_come:
        return True
    tags = html.count("<")
    if marks_to_come:
        size += tags
    long_tag = _LONG_TAG_UNMARKED if marks_to_come else _LONG_TAG
    return size <= PARSE_PIECE or (
        tags <= _WHOLE_MAX_TAGS and (size <= _WHOLE_MAX_CHARS or long_tag.search(html) is None)
    )


def _head_dropped(parts: list[str], names: list[str | None]) -> bool:
    """Drop the white space after `style` elements that open the markup: the parser puts
    them in the head, and that white space with them. False where it may do more."""
    index = 0
    while index < len(names) and names[index] is None:
        following = parts[2 * index + 2].lstrip(_HTML_SPACE)
        parts[2 * index + 2] = following
        if following:
            return not following.startswith(_WHITE_REFERENCES)
        index += 1
        name = names[index] if index < len(names) else None
        if name is not None and name.startswith("/"):
            return False  # ignored in the head, which goes on dropping white space
    return True


def _pre_newlines_dropped(parts: list[str], names: list[str | None]) -> bool:
    """Drop the newline right after each `<pre>` start tag, as the parser does. False where
    a reference starts that text (it may be a newline too)."""
    index = -1
    try:
        while True:
            index = names.index("pre", index + 1)
            following = parts[2 * index + 2]
            if following.startswith("\n"):
                parts[2 * index + 2] = following[1:]
            elif following.startswith("&"):
                return False
    except ValueError:
        return True


def _parsed_text(html: str) -> str:
    """The text of the document's body, as the HTML parser builds it."""
    tree = LexborHTMLParser(html)
    if _NOT_RENDERED.search(html):
        tree.strip_tags(_NOT_RENDERED_TAGS)
    body = tree.body
    return body.text(deep=True, separator="", strip=False) if body is not None else ""


def _parsed_in_pieces(html: str, *, any_case: bool = True) -> str:
    """`_parsed_text` of `html`, whole when the parser's work on it is bounded anyway (few
    tags, none long: every document of the speed corpus), else piece by piece."""
    if _one_parse(html):
        return _parsed_text(html)
    return "".join(map(_parsed_text, _pieces(html, any_case=any_case)))


def _pieces(html: str, *, any_case: bool = True) -> Iterator[str]:
    """`html` in pieces of at most about `PARSE_PIECE` characters, parsed one at a time.

    The tree builder does work per element that grows with the elements still open (scope
    checks, active formatting elements, a tag's attributes checked against each other), so
    deeply nested or misnested markup costs it time quadratic in its length: 256 KB of
    nested `<div>` took seconds. Pieces bound that to a constant per character. A cut goes,
    by preference, after a table that is closed (outside every table the text reads exactly
    as in one parse), else before a block tag (a line boundary), else before another tag,
    else after a space. Inside a table only where a line break lands can differ (the parser
    moves marks it finds between cells); no text is lost. `any_case`: a tag name may hold
    capitals (else `html` is searched as it is, without a lower-cased copy).
    """
    size = len(html)
    if size <= PARSE_PIECE:
        yield html
        return
    lowered = html.lower() if any_case else html
    if len(lowered) != len(html):  # a character that lowers to two (U+0130): keep offsets
        lowered = html.translate(_ASCII_LOWER)
    depth, low = 0, 0  # tables open at `low`
    while size - low > PARSE_PIECE:
        high, floor = low + PARSE_PIECE, low + PARSE_PIECE // 2
        cut = _after_closed_table(html, lowered, low, high, depth)
        if cut < 0:
            cut = html.rfind(_MARK + "<", floor, high)
        if cut < 0:
            cut = html.rfind("<", floor, high)
        if cut < 0:  # after the space: the parser drops whitespace that starts a document
            cut = html.rfind(" ", floor, high) + 1
        if cut <= low:
            cut = high
        yield html[low:cut]
        depth += lowered.count("<table", low, cut) - lowered.count("</table", low, cut)
        low = cut
    yield html[low:]


def _after_closed_table(
    html: str, lowered: str, low: int, high: int, depth: int, tries: int = 8
) -> int:
    """Where the next tag starts after the last of a few `</table>`s in (low, high) that
    leaves no table open, or -1. `depth`: tables open at `low`."""
    end = high
    for _ in range(tries):
        end = lowered.rfind("</table", low + 1, end)
        if end < 0:
            return -1
        opened = lowered.count("<table", low, end) - lowered.count("</table", low, end)
        if depth + opened == 1:
            close = html.find(">", end, high)
            if close >= 0:
                following = html.find("<", close + 1, high)
                if following >= 0:
                    mark = html.rfind(_MARK, close + 1, following)
                    return mark if mark >= 0 else following
    return -1


def _simple_text(html: str, *, special: re.Pattern[str] = _SPECIAL_TAG_ANY_CASE) -> str | None:
    """`_parsed_text` of simple markup (see `_SIMPLE_TAG`), or None for anything else.

    `special` finds the tags the tree builder treats specially.
    """
    body = _body_start(html)
    if body is None or special.search(body):
        return None
    return _decoded(_SIMPLE_TAG.sub("", body))


def _body_start(html: str) -> str | None:
    """`html` from where the parser starts keeping text, line breaks as the parser reads
    them, or None where stripping tags cannot give the parser's text (numeric references,
    references cut by a tag, NULs, an end tag or a white-space reference first)."""
    if "&#" in html or "\x00" in html or ("&" in html and _REFERENCE_CUT.search(html)):
        return None
    # Before the first tag or character, the parser is outside the body: whitespace is dropped.
    html = html.lstrip(_HTML_SPACE)
    if html.startswith(_DROPPED_FIRST):
        return None  # an end tag there is dropped or re-read; the parser knows which
    # CR LF and CR are LF before the parser reads anything; a tag stripped later must not
    # join a CR and a LF it separates into one.
    if "\r" in html:
        html = html.replace("\r\n", "\n").replace("\r", "\n")
    return html


def _decoded(stripped: str) -> str | None:
    """Text with its tags stripped, references decoded; None if a `<` is left over."""
    if "<" in stripped:
        return None
    return html_entities.unescape(stripped) if "&" in stripped else stripped


def _source_whitespace(text: str) -> str:
    """Line breaks and tabs in HTML source render as spaces."""
    if "\n" in text or "\r" in text or "\t" in text:
        return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return text


def normalise(text: str) -> str:
    """NBSP and other spaces to a plain space, invisible characters out, NFKC (full-width
    digits and letters to ASCII), runs of spaces to one."""
    if not text.isascii():
        if "\xa0" in text:  # by far the most common: every `&nbsp;` after a mention
            text = text.replace("\xa0", " ")
        if not text.isascii():
            if _INVISIBLE.search(text):
                text = _INVISIBLE.sub("", text)
            if not unicodedata.is_normalized("NFKC", text):
                text = unicodedata.normalize("NFKC", text)
    if "  " in text or "\t" in text:
        text = _RUNS_OF_SPACES.sub(" ", text)
    return text


def message_text(message: Mapping[str, Any]) -> str:
    """Everything a person reads in a Graph chatMessage or Outlook message, one part a line.

    Subject, summary, the body (HTML or text), attachment names and the text inside cards
    (`application/vnd.microsoft.card.*` JSON). An Outlook `bodyPreview` is read only when
    there is no body, since it repeats the body's start.
    """
    if not _is_mapping(message):
        raise TypeError(
            f"a message must be a mapping (a decoded JSON object), not {type(message).__name__}"
        )
    parts: list[str] = []
    for field in ("subject", "summary"):
        if value := message.get(field):
            parts.append(normalise(_string(value, field)))
    body_text = _body_text(message.get("body"))
    if body_text:
        parts.append(body_text)
    elif message.get("bodyPreview"):
        parts.append(normalise(_string(message["bodyPreview"], "bodyPreview")))
    attachments = message.get("attachments")
    if attachments:
        if not isinstance(attachments, list | tuple):
            raise TypeError(
                f"message attachments must be a list (JSON array), not {type(attachments).__name__}"
            )
        for index, attachment in enumerate(attachments):
            if not _is_mapping(attachment):
                raise TypeError(
                    f"attachments[{index}] must be an object, not {type(attachment).__name__}"
                )
            parts.extend(_attachment_parts(attachment, index))
    return "\n".join(filter(None, parts))


def _body_text(body: Any) -> str:
    if body is None:
        return ""
    if not _is_mapping(body):
        raise TypeError(
            "message body must be an object with contentType and content,"
            f" not {type(body).__name__}"
        )
    content = body.get("content")
    if not content:
        return ""
    content = _string(content, "body.content")
    kind = str(body.get("contentType") or "html").lower()
    return html_to_text(content) if kind == "html" else normalise(content)


def _attachment_parts(attachment: Mapping[str, Any], index: int) -> Iterator[str]:
    name = attachment.get("name")
    if name:
        yield normalise(_string(name, f"attachments[{index}].name"))
    content_type = str(attachment.get("contentType") or "").lower()
    content = attachment.get("content")
    if content and content_type.startswith(_CARD_CONTENT_TYPES):
        yield normalise("\n".join(_card_strings(content)))


def _card_strings(content: Any) -> Iterable[str]:
    """The string values of a card. Graph sends the card as a JSON string; content that is
    not JSON is read as it is rather than skipped."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return [content]
    found: list[str] = []
    stack = [content]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def _is_mapping(value: Any) -> bool:
    """Decoded JSON objects are dicts: the exact type test spares the ABC machinery."""
    return type(value) is dict or isinstance(value, Mapping)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"message {field} must be a string, not {type(value).__name__}")
    return value
