"""Checkbox normalisation: every notation to `[√]` / `[ ]`, ordinary text left alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrflux.format.checkboxes import normalize_checkboxes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("☑ Yes ☐ No", "[√] Yes [ ] No"),
        ("☒ a ✓ b ✔ c √ d ■ e ▣ f ✅ g", "[√] a [√] b [√] c [√] d [√] e [√] f [√] g"),
        ("□ a ▢ b ⬜ c", "[ ] a [ ] b [ ] c"),
        ("- [x] done\n- [X] also\n- [ ] todo", "- [√] done\n- [√] also\n- [ ] todo"),
        ("性别：☑男 ☐女", "性别：[√] 男 [ ] 女"),
        ("婚姻状况：□未婚■已婚", "婚姻状况：[ ] 未婚 [√] 已婚"),
        ("☑☐☐", "[√] [ ] [ ]"),
        ("Insurance: (x) Private ( ) Public", "Insurance: [√] Private [ ] Public"),
        ("性别：（x）男 （ ）女", "性别：[√] 男 [ ] 女"),
        ("(√) checked, [✓] too, 【√】 too", "[√] checked, [√] too, [√] too"),
        ("[□] empty", "[ ] empty"),
        ("<td>✓</td><td>□</td>", "<td>[√]</td><td>[ ]</td>"),
        ("☑️ emoji form", "[√] emoji form"),
    ],
)
def test_checkbox_notations_are_normalised(text: str, expected: str) -> None:
    assert normalize_checkboxes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "f(x) = √2 + √(x+1) and √x",
        "(x) is item ten of the list",  # a lone (x) is an enumerator
        "1. 下列说法正确的是（ ）",  # a lone exam blank
        "the ring R[x] and a [x](https://example.com) link",
        "inline `[x]` code and $f(x) ( )$ maths and \\(\\sqrt{2}\\)",
        "```\n- [x] in a fence\n☐\n```",
        "empty [] and () are not boxes",
        "[√] already [ ] normal",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert normalize_checkboxes(text) == text


def test_boxes_of_a_group_stay_on_their_line() -> None:
    text = "选项：☑A ☐B ☑C\n备注：无"
    result = normalize_checkboxes(text)
    assert result.splitlines() == ["选项：[√] A [ ] B [√] C", "备注：无"]


def test_weak_boxes_need_a_companion_on_the_same_line() -> None:
    assert normalize_checkboxes("(x) one\n( ) two") == "(x) one\n( ) two"
    assert normalize_checkboxes("(x) one ( ) two") == "[√] one [ ] two"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("☑☐√■□[]()（）xX 2a\n`$:："), max_size=40))
def test_normalisation_is_idempotent_and_keeps_line_count(text: str) -> None:
    once = normalize_checkboxes(text)
    assert normalize_checkboxes(once) == once
    assert once.count("\n") == text.count("\n")
