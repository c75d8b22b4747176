"""HTML and messages to the text the detectors read."""

from __future__ import annotations

import json
import random
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

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
from graphtap.simulation.corpus import teams_message_html


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
_REFERENCES += ["&#39;", "&#x1;", "&#0;", "&;", "&am", "p;", "&", "#49;"]
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
    with (
        mock.patch.object(text_module, "_usual_text", return_value=None),
        mock.patch.object(text_module, "_simple_text", return_value=None),
    ):
        by_parser = html_to_text(html)
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
        "<table><tr><td>1</td></tr></table>x",  # text outside cells moves before the table
        "<pre>\nfirst</pre>",  # the newline after <pre> is dropped
        "<p>a &#1; b</p>",  # numeric references: the parser's table, not html.unescape's
        "<p>a < b</p>",
        "<!-- x --><p>a</p>",
        "</p>  <p>a</p>",
    ],
)
def test_other_markup_goes_to_the_parser(html: str) -> None:
    assert _usual_text(html) is None
    assert _simple_text(html) is None


def test_simulated_chat_bodies_take_the_short_path() -> None:
    rng = random.Random(7)
    bodies = [teams_message_html(rng, sensitive=i % 3 == 0).html for i in range(300)]
    simple = sum(_usual_text(body) is not None for body in bodies)
    assert simple >= 0.9 * len(bodies)
