"""HTML and messages to the text the detectors read."""

from __future__ import annotations

import json
import random
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from graphtap.inspection import tables as tables_module
from graphtap.inspection import text as text_module
from graphtap.inspection.text import (
    _BLOCK_NAMES,
    _MARK,
    _TREE_BUILDER_NAMES,
    _USUAL_TAGS,
    _simple_text,
    _usual_text,
    html_to_text,
    message_text,
    normalise,
)
from graphtap.simulation.corpus import labeled_message, teams_message_html


def test_inline_markup_does_not_split_a_number() -> None:
    assert html_to_text("<p>4111 <b>1111</b> 1111 1111</p>") == "\n4111 1111 1111 1111\n"


def test_blocks_become_lines() -> None:
    text = html_to_text("<p>one</p><p>two</p><div>three<div>four</div></div>a<br>b")
    assert [line for line in text.split("\n") if line] == ["one", "two", "three", "four", "a", "b"]


def test_table_cells_do_not_run_together() -> None:
    text = html_to_text("<table><tr><td>123</td><td>456</td></tr><tr><td>789</td></tr></table>")
    assert "123456" not in text
    assert "456789" not in text
    assert {"123", "456", "789"} <= set(text.split())


def test_upper_case_tags_are_blocks_too() -> None:
    lines = html_to_text("<P>one</P><DIV>two</DIV>").split("\n")
    assert [line for line in lines if line] == ["one", "two"]


def test_style_script_and_head_are_dropped() -> None:
    html = (
        "<html><head><title>t 4111111111111111</title><style>p{}</style></head>"
        "<body><style>.x{color:red}</style><script>var card='4111'</script><p>hello</p></body>"
        "</html>"
    )
    assert html_to_text(html).strip() == "hello"


def test_source_newlines_render_as_spaces() -> None:
    assert html_to_text("<p>4111\n1111\r\n1111\t1111</p>").strip() == "4111 1111 1111 1111"


def test_nbsp_zero_width_and_full_width_digits_are_normalised() -> None:
    full_width_4111 = "\uff14\uff11\uff11\uff11"
    text = html_to_text(f"<p>{full_width_4111}&nbsp;1111\u200b 1111\ufeff 1111 &amp; more</p>")
    assert text.strip() == "4111 1111 1111 1111 & more"


def test_mentions_keep_their_text() -> None:
    assert "Megan Bowen" in html_to_text('<p><at id="0">Megan Bowen</at>&nbsp;hi</p>')


def test_plain_text_body_and_runs_of_spaces() -> None:
    assert normalise("a  \u00a0 b") == "a b"


def test_chat_message_parts() -> None:
    card = {
        "type": "AdaptiveCard",
        "body": [{"type": "TextBlock", "text": "card says 536-22-1844"}],
    }
    message = {
        "subject": "Quarterly",
        "summary": "short summary",
        "body": {"contentType": "html", "content": "<p>body text</p>"},
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": json.dumps(card),
                "name": None,
            },
            {"contentType": "reference", "content": None, "name": "salaries-2026.xlsx"},
        ],
        "mentions": [{"id": 0, "mentionText": "Megan"}],
    }
    text = message_text(message)
    for expected in ("Quarterly", "short summary", "body text", "card says 536-22-1844"):
        assert expected in text
    assert "salaries-2026.xlsx" in text


def test_card_content_that_is_not_json_is_read_as_is() -> None:
    message = {
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.hero", "content": "{not json 4111"}
        ]
    }
    assert "{not json 4111" in message_text(message)


def test_outlook_body_preview_only_without_a_body() -> None:
    with_body = {
        "subject": "s",
        "body": {"contentType": "text", "content": "full body"},
        "bodyPreview": "full bo",
    }
    assert message_text(with_body) == "s\nfull body"
    assert message_text({"bodyPreview": "preview only"}) == "preview only"


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("not a dict", "mapping"),
        ({"body": "x"}, "body"),
        ({"body": {"contentType": "html", "content": 5}}, "body.content"),
        ({"attachments": {"name": "x"}}, "attachments"),
        ({"attachments": ["x"]}, "attachments[0]"),
    ],
)
def test_malformed_messages_are_named_errors(message: object, problem: str) -> None:
    with pytest.raises(TypeError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        message_text(message)  # type: ignore[arg-type]


# Markup from what Teams sends to what only a parser gets right: ordinary and custom elements,
# attributes with every quoting, character references, stray brackets, raw-text and table
# elements, comments, leading white space and end tags.
_ORDINARY_TAGS = ["p", "div", "dIV", "b", "I", "span", "at", "br", "emoji", "a", "li", "h1", "Hr"]
_PARSER_TAGS = ["table", "td", "pre", "script", "sCRIPT", "style", "textarea", "title", "body"]
_TAG_NAMES = st.sampled_from([*_ORDINARY_TAGS, "code", "x-card", "select", "svg", *_PARSER_TAGS])
_ATTRIBUTE = st.tuples(
    st.sampled_from(["id", "class", "style", "alt", "data-x", "=odd", "t'"]),
    st.sampled_from(['="0"', "='a>b'", "=plain", '="x<y"', "", '= "sp"', "=a`b", '=v"w']),
).map("".join)
_TAG = st.builds(
    lambda end, name, attributes, slash: f"<{end}{name}{''.join(attributes)}{slash}>",
    st.sampled_from(["", "", "/"]),
    _TAG_NAMES,
    st.lists(_ATTRIBUTE.map(lambda a: " " + a), max_size=2),
    st.sampled_from(["", "", " /", "/"]),
)
_REFERENCES = ["&nbsp;", "&amp;", "&lt;", "&quot;", "&not", "&notin;", "&notit;", "&amp", "& "]
_REFERENCES += ["&#39;", "&#x1;", "&#0;", "&;", "&am", "p;", "&", "#49;", "&Tab;", "&NewLine;"]
_ODD_MARKUP = ["<", " < ", ">", "</>", "<?x?>", "<!DOCTYPE html>", "<!-- c -->", "\x00", "\x01"]
_TEXT = st.one_of(
    st.text(alphabet="ab 19-\t\n\r\f\x0b\xa0é", max_size=8),
    st.sampled_from(_REFERENCES + _ODD_MARKUP),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_TAG, _TEXT), max_size=12).map("".join))
@example("<p>a</p><script>var card='4111'</script><sCRIPT>b</sCRIPT><style>p{}</style>c")
@example("<table><td>1</td>moved</table>")
@example(" \n <p>leading white space</p>")
@example("</p>  x")
@example("<p>&#1;&#x80;&notit;</p>")
@example("<Div>upper</Div><dIV>mixed</dIV>")
@example("<p>&am<b></b>p; &<i></i>#49;</p>")  # references cut by tags stay as written
def test_simple_markup_reads_exactly_as_the_parser_reads_it(html: str) -> None:
    by_parser = _parser_text(html)
    assert html_to_text(html) == by_parser
    with mock.patch.object(text_module, "_usual_text", return_value=None):
        assert html_to_text(html) == by_parser  # the general path, for every markup


def test_a_control_character_in_the_source_does_not_split_a_number() -> None:
    assert html_to_text("<p>4111\x01 1111 1111\x011111</p>").strip() == "4111 1111 11111111"


@pytest.mark.parametrize(
    "html",
    [
        '<p><at id="0">Megan Bowen</at>&nbsp;card 4111 <b>1111</b> 1111 1111</p>',
        '<div><div>see <span style="color:#d13438">DE89 3704</span></div></div>',
        "<p>one<br>two &amp; three</p><ul><li>a</li></ul>",
    ],
)
def test_teams_markup_skips_the_parser(html: str) -> None:
    assert _usual_text(html) is not None


def test_usual_tags_are_lower_case_and_none_is_special_to_the_tree_builder() -> None:
    assert all(name == name.lower() for name in _USUAL_TAGS)
    assert not set(_USUAL_TAGS) & set(_TREE_BUILDER_NAMES)
    assert {name for name, left in _USUAL_TAGS.items() if left == _MARK} <= set(_BLOCK_NAMES)


@pytest.mark.parametrize(
    "html",
    [
        "<p>a &#1; b</p>",  # numeric references: the parser's table, not html.unescape's
        "<p>a < b</p>",
        "<!-- x --><p>a</p>",
        "</p>  <p>a</p>",
        "<table><tr><td>1</td><table>",  # a table directly in a table
        "<table><tr><div>x</div></tr></table>",  # an element between rows
        "<pre>&NewLine;first</pre>",  # maybe the newline the parser drops after <pre>
        "<style>p{}</style></p> x",  # an end tag in the head
        '<style>p{}</style x="open',  # an end tag that is not simple
    ],
)
def test_other_markup_goes_to_the_parser(html: str) -> None:
    assert _usual_text(html) is None
    assert _simple_text(html) is None


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # Marks between cells move in front of the table, as the tree builder moves them.
        ("<table><tr><td>1</td></tr></table>x", "\n\n\n\n\n1\nx"),
        ("<pre>\nfirst</pre>", "\nfirst\n"),  # the newline after <pre> is dropped
        ("<style>p{}</style>\n <p>a</p>", "\na\n"),  # the head's white space with it
    ],
)
def test_tables_pre_and_style_take_the_short_path(html: str, text: str) -> None:
    assert _usual_text(html) is not None
    assert html_to_text(html) == text


def _parser_text(html: str) -> str:
    with (
        mock.patch.object(text_module, "_usual_text", return_value=None),
        mock.patch.object(text_module, "_simple_text", return_value=None),
    ):
        return html_to_text(html)


_TABLE_TAG = st.builds(
    lambda end, name, rest: f"<{end}{name}{rest}",
    st.sampled_from(["", "", "/"]),
    st.sampled_from(["table", "tr", "td", "th", "tbody", "thead", "tfoot", "p", "b", "pre"]),
    st.sampled_from([">", ">", ' class="a">', "/>", "\n>"]),
)
# (With the characters that bracket runs between cells, written in the source.)
_TABLE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\r\n",
        "\r",
        "x",
        "12",
        "&nbsp;",
        "&amp;",
        "&Tab;",
        "\t",
        "\x0b",
        "\x01",
        "\x02",
        "\x03",
    ]
)
_STYLE = st.sampled_from(
    ["<style>a{}</style>", "<STYLE>q</style/>", "<style>open", "<style>b</style x='>'>", "</style>"]
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(_TABLE_TAG, _TABLE_TEXT, _STYLE), max_size=16).map("".join))
@example("<table> <tr><td>1</td> x <td>2</td></tr></table>")
@example("<table><td>1<table><tr><td>2</table>3</table>")
@example("<table>\t<tbody>\n<tr><th>1</td>2</th></tbody></table>")
@example("<style>a{}</style> &Tab;<p>x</p>")
@example("\x0b\r<tfoot>\n")  # a CR and a LF a stripped tag separates stay two line breaks
def test_tables_read_exactly_as_the_parser_reads_them(html: str) -> None:
    assert html_to_text(html) == _parser_text(html)


_CELL = st.lists(st.one_of(_TABLE_TEXT, st.sampled_from(["<b>", "</b>", "<p>", "<br>"]))).map(
    "".join
)
_BETWEEN = st.sampled_from(["", "", "", "", " ", "x", "\x02", "<style>a{}</style>"])
_ROW = st.lists(
    st.tuples(_BETWEEN, st.sampled_from(["td", "th"]), _CELL).map(
        lambda cell: f"{cell[0]}<{cell[1]}>{cell[2]}</{cell[1]}>"
    ),
    max_size=3,
).map(lambda cells: "<tr>" + "".join(cells) + "</tr>")
_WRITTEN_OUT_TABLE = st.tuples(st.lists(st.tuples(_BETWEEN, _ROW), max_size=3), _BETWEEN).map(
    lambda table: "<table>" + "".join(a + b for a, b in table[0]) + table[1] + "</table>"
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(_WRITTEN_OUT_TABLE, _CELL), min_size=1, max_size=4).map("".join))
@example("<table><tr><td>1</td><td>2<b>3</b></td></tr><tr><th>a</th></tr></table>x")
@example("<table><tr><td>\x02</td></tr></table>")  # a bracket character in a cell
def test_tables_written_out_in_full_read_as_the_parser_reads_them(html: str) -> None:
    """Every row and cell closed: such tables are read without walking their tags."""
    assert html_to_text(html) == _parser_text(html)


def test_a_table_written_out_in_full_is_not_walked_tag_by_tag() -> None:
    html = "<p>a</p><table><tr><th>h</th></tr><tr><td>1</td><td>2</td></tr></table>b"
    with mock.patch.object(tables_module, "_fostered_tag_by_tag") as walk:
        assert html_to_text(html) == _parser_text(html)
    walk.assert_not_called()


def test_simulated_chat_bodies_take_the_short_path() -> None:
    rng = random.Random(7)
    bodies = [teams_message_html(rng, sensitive=i % 3 == 0).html for i in range(300)]
    simple = sum(_usual_text(body) is not None for body in bodies)
    assert simple >= 0.9 * len(bodies)


@pytest.mark.parametrize("length", ["post", "long"])
def test_simulated_posts_and_pastes_take_the_short_path_and_read_as_the_parser(
    length: str,
) -> None:
    """Lists, tables, logs in `pre` and mails with their style sheets."""
    rng = random.Random(11)
    bodies = [labeled_message(rng, sensitive=i % 2 == 0, length=length).html for i in range(40)]
    assert any("<table" in body and "<pre" in body and "<style" in body for body in bodies)
    for body in bodies:
        assert _usual_text(body) is not None
        assert html_to_text(body) == _parser_text(body)
