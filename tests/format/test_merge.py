"""OCRFlux's cross-page merge (ocrflux.format.merge): answers, planning, assembly, prompts."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocrflux.format.merge import (
    MAX_ANSWER_CHARS,
    TableKey,
    assemble,
    is_table,
    page_elements,
    parse_merge_pairs,
    parse_table_merge,
    plan_table_merges,
    table_merge_inputs,
)
from ocrflux.format.page import build_element_merge_detect_prompt, build_html_table_merge_prompt
from tests.documents.pdfs import SCENARIOS, Scenario, table

# --- oracles: the toolkit's functions restated (chatdoc-com/OCRFlux at commit 71954ad) ---------


def toolkit_build_document_text(
    page_to_markdown_result: dict[int, list[str]],
    element_merge_detect_result: dict[tuple[int, int], list[tuple[int, int]]],
    html_table_merge_result: dict[tuple[int, int, int, int], str],
    *,
    skip_consumed: bool = False,
) -> str:
    """ocrflux/client.py (and pipeline.py) `build_document_text`, statement for statement.

    `skip_consumed=True` is the gateway's one deliberate change: no separator is appended when
    the second fragment was already consumed (the toolkit leaves `"</table> "`).
    """
    page_to_markdown_keys = list(page_to_markdown_result.keys())
    element_merge_detect_keys = list(element_merge_detect_result.keys())
    html_table_merge_keys = list(html_table_merge_result.keys())

    for page_1, page_2, elem_idx_1, elem_idx_2 in sorted(
        html_table_merge_keys, key=lambda x: -x[0]
    ):
        page_to_markdown_result[page_1][elem_idx_1] = html_table_merge_result[
            (page_1, page_2, elem_idx_1, elem_idx_2)
        ]
        page_to_markdown_result[page_2][elem_idx_2] = ""

    for page_1, page_2 in sorted(element_merge_detect_keys, key=lambda x: -x[0]):
        for elem_idx_1, elem_idx_2 in element_merge_detect_result[(page_1, page_2)]:
            if skip_consumed and page_to_markdown_result[page_2][elem_idx_2] == "":
                continue
            if (
                len(page_to_markdown_result[page_1][elem_idx_1]) == 0
                or page_to_markdown_result[page_1][elem_idx_1][-1] == "-"
                or ("\u4e00" <= page_to_markdown_result[page_1][elem_idx_1][-1] <= "\u9fff")
            ):
                page_to_markdown_result[page_1][elem_idx_1] = (
                    page_to_markdown_result[page_1][elem_idx_1]
                    + ""
                    + page_to_markdown_result[page_2][elem_idx_2]
                )
            else:
                page_to_markdown_result[page_1][elem_idx_1] = (
                    page_to_markdown_result[page_1][elem_idx_1]
                    + " "
                    + page_to_markdown_result[page_2][elem_idx_2]
                )
            page_to_markdown_result[page_2][elem_idx_2] = ""

    document_text_list = []
    for page in page_to_markdown_keys:
        page_text_list = [s for s in page_to_markdown_result[page] if s]
        document_text_list += page_text_list
    return "\n\n".join(document_text_list)


def toolkit_merge_detect_prompt(text_list_1: list[str], text_list_2: list[str]) -> str:
    """ocrflux/prompts.py `build_element_merge_detect_prompt`, verbatim."""
    task = """Below are two consecutive pages in Markdown format, where each element of them is numbered. Identify pairs of elements which should be merged across the two pages, such as text paragraphs or tables that span across the two pages. Return pairs as [(element_index_of_page1, element_index_of_page2), ...] or [] if no elements should be merged.\n"""  # noqa: E501
    task += "Previous page:\n"
    for i, text in enumerate(text_list_1):
        task += f"{i}. {text}\n\n"
    task += "Next page:\n"
    for i, text in enumerate(text_list_2):
        task += f"{i}. {text}\n\n"
    return task


def toolkit_table_merge_prompt(table1: str, table2: str) -> str:
    """ocrflux/prompts.py `build_html_table_merge_prompt`, verbatim."""
    return (
        "Below are two tables in HTML format, merge them into one table in HTML format.\n"
        "TABLE 1:\n"
        f"{table1}\n"
        "TABLE 2:\n"
        f"{table2}\n"
    )


def toolkit_table_batches(table_pairs: list[TableKey]) -> list[list[TableKey]]:
    """The batching loop of ocrflux/pipeline.py `process_pdf` (stage 3), without the calls."""
    table_pairs = sorted(table_pairs, key=lambda x: -x[0])
    batches = []
    i = 0
    while i < len(table_pairs):
        keys = [table_pairs[i]]
        ids_1 = [(table_pairs[i][0], table_pairs[i][2])]
        j = i + 1
        while j < len(table_pairs):
            page_1, page_2, elem_idx_1, elem_idx_2 = table_pairs[j]
            if (page_2, elem_idx_2) not in ids_1:
                keys.append(table_pairs[j])
                ids_1.append((page_1, elem_idx_1))
                j = j + 1
            else:
                break
        batches.append(keys)
        i = j
    return batches


def toolkit_inputs(pages: dict[int, list[str]], done: dict[TableKey, str], key: TableKey) -> Any:
    """What process_pdf's `tmp_page_to_markdown_result` holds for a call after `done` merged."""
    tmp = copy.deepcopy(pages)
    for (page_1, _, elem_idx_1, _), result in done.items():
        tmp[page_1][elem_idx_1] = result
    return tmp[key[0]][key[2]], tmp[key[1]][key[3]]


# --- page elements and prompts ----------------------------------------------------------------


def test_page_elements_split_on_blank_lines_and_drop_image_placeholders() -> None:
    text = (
        "# Title\n\n<Image>(1,2),(3,4)</Image>\n\nPara one\nline two\n\n"
        "<table><tr><td>a</td></tr></table>"
    )
    assert page_elements(text) == [
        "# Title",
        "Para one\nline two",
        "<table><tr><td>a</td></tr></table>",
    ]
    # Only a whole element is a placeholder; an empty element stays (the prompt numbers it).
    assert page_elements("a <Image>(1,2),(3,4)</Image>\n\n\n\nb") == [
        "a <Image>(1,2),(3,4)</Image>",
        "",
        "b",
    ]
    assert page_elements("") == [""]


def test_is_table_is_the_toolkits_test() -> None:
    assert is_table("<table><tr><td>1</td></tr></table>")
    assert not is_table(" <table></table>")
    assert not is_table("<table></table> ")
    assert not is_table('<table border="1"></table>')


element_text = st.text(st.sampled_from("ab -中，\n|<>{}\\"), max_size=12)


@given(st.lists(element_text, max_size=5), st.lists(element_text, max_size=5))
@example(["1. x", "{0}"], ["", "中"])
def test_merge_detect_prompt_is_byte_identical_to_the_toolkits(a: list[str], b: list[str]) -> None:
    assert build_element_merge_detect_prompt(a, b) == toolkit_merge_detect_prompt(a, b)


@given(element_text, element_text)
def test_table_merge_prompt_is_byte_identical_to_the_toolkits(a: str, b: str) -> None:
    assert build_html_table_merge_prompt(a, b) == toolkit_table_merge_prompt(a, b)


# --- merge-detect answers ---------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    ("[]", []),
    ("[(1, 0)]", [(1, 0)]),
    ("[(2, 0), (0, 1)]", [(2, 0), (0, 1)]),
    ("  [ ( 1 ,0 ) ,\n (0,1), ]\n", [(1, 0), (0, 1)]),  # whitespace, a trailing comma
    ("[[1, 0]]", [(1, 0)]),  # lists for tuples: still plain data
    ("[(1, 0), (1, 0)]", [(1, 0)]),  # an exact repeat is kept once
    ("[(1, 0), (1, 1), (0, 0)]", [(1, 0)]),  # one-to-one: the first pair for an element wins
])  # fmt: skip
def test_merge_pairs_are_read_as_data(answer: str, expected: list[tuple[int, int]]) -> None:
    assert parse_merge_pairs(answer, 3, 2) == expected


HOSTILE = [
    "__import__('os').system('touch /tmp/ocrflux-merge-pwned')",
    "[(__import__('os').system('touch /tmp/ocrflux-merge-pwned'), 0)]",
    "[(1, 0)] + [__import__('os').getpid()]",
    "[(1, 0)]; import os",
    "[(3, 0)]",  # out of range on page 1 (3 elements: 0-2)
    "[(0, 2)]",  # out of range on page 2
    "[(1, 0), (9, 9)]",  # one bad pair spoils the answer
    "[(-1, 0)]",
    "[(1.0, 0)]",
    "[(True, 0)]",
    "[('1', 0)]",
    "[(1, 0, 2)]",
    "[(1,)]",
    "[(1, 0]",
    "[(1 0)]",
    "[(1 1, 0)]",  # would read as 11 if spaces were simply dropped
    "(1, 0)",
    "{(1, 0)}",
    "[(1, 0)] [(0, 1)]",
    "[" * 10_000 + "]" * 10_000,
    "[(0, 0)" + ", (0, 0)" * 2000 + "]",  # longer than any real answer
    "[(٣, 0)]",  # an Arabic-Indic digit: int() would read it as 3
    "[(1, 0)]```",
    "Elements 1 and 0 continue each other.",
    "",
    "None",
]


@pytest.mark.parametrize("answer", HOSTILE)
def test_hostile_or_broken_answers_mean_no_merge(answer: str) -> None:
    marker = "/tmp/ocrflux-merge-pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    assert parse_merge_pairs(answer, 3, 2) == []
    assert not os.path.exists(marker)


def test_answer_size_bound() -> None:
    long_but_valid = "[(1, 0)" + " " * (MAX_ANSWER_CHARS - 8) + "]"
    assert len(long_but_valid) == MAX_ANSWER_CHARS
    assert parse_merge_pairs(long_but_valid, 3, 2) == [(1, 0)]
    assert parse_merge_pairs(long_but_valid + " ", 3, 2) == []


@given(st.text(max_size=200), st.integers(0, 5), st.integers(0, 5))
def test_any_answer_gives_valid_one_to_one_pairs(answer: str, len1: int, len2: int) -> None:
    pairs = parse_merge_pairs(answer, len1, len2)
    assert all(0 <= i < len1 and 0 <= j < len2 for i, j in pairs)
    assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=6), st.booleans())
def test_well_formed_answers_round_trip(pairs: list[tuple[int, int]], spaced: bool) -> None:
    answer = repr(pairs) if spaced else repr(pairs).replace(" ", "")
    firsts: set[int] = set()
    seconds: set[int] = set()
    expected = []
    for i, j in pairs:
        if i not in firsts and j not in seconds:  # a dropped pair pairs nothing
            expected.append((i, j))
            firsts.add(i)
            seconds.add(j)
    assert parse_merge_pairs(answer, 5, 5) == expected


# --- table-merge answers ----------------------------------------------------------------------

T_A = table([("1", "2")])
T_B = table([("3", "4")])


@pytest.mark.parametrize(("answer", "expected"), [
    (T_A, T_A),
    (f"\n {T_A}\n", T_A),
    ("<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>",
     "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>"),
    (f"{T_A}{T_B}", None),  # two tables
    (f"{T_A} and {T_B}", None),
    (f"Here is the table: {T_A}", None),
    ("<table><tr><td>cut off", None),
    ("<table></table></table>", None),
    ("<table><table></table>", None),
    ("```html\n<table></table>\n```", None),
    ("", None),
])  # fmt: skip
def test_table_merge_answer(answer: str, expected: str | None) -> None:
    assert parse_table_merge(answer) == expected


# --- planning table merges --------------------------------------------------------------------

T = "<table><tr><td>{}</td></tr></table>"


def test_chain_over_three_pages_merges_the_later_pair_first() -> None:
    pages = [["intro", T.format(1)], [T.format(2)], [T.format(3), "outro"]]
    merges = {(0, 1): [(1, 0)], (1, 2): [(0, 0)]}
    plan = plan_table_merges(pages, merges)
    assert plan == [[(1, 2, 0, 0)], [(0, 1, 1, 0)]]
    done: dict[TableKey, str] = {}
    assert table_merge_inputs(pages, done, (1, 2, 0, 0)) == (T.format(2), T.format(3))
    done[(1, 2, 0, 0)] = T.format(23)
    assert table_merge_inputs(pages, done, (0, 1, 1, 0)) == (T.format(1), T.format(23))
    done[(0, 1, 1, 0)] = T.format(123)
    assert assemble(pages, merges, done) == f"intro\n\n{T.format(123)}\n\noutro"


def test_only_pairs_of_two_tables_are_planned_and_independent_ones_share_a_batch() -> None:
    pages = [["a", T.format(1)], [T.format(2), "b", T.format(3)], ["c", T.format(4)], [T.format(5)]]
    merges = {(0, 1): [(1, 0), (0, 1)], (1, 2): [(2, 0)], (2, 3): [(1, 0)]}
    # (1,2): T3 + "c" is no table pair. (2,3) and (0,1) do not touch each other.
    assert plan_table_merges(pages, merges) == [[(2, 3, 1, 0), (0, 1, 1, 0)]]


def test_plan_ignores_what_does_not_fit() -> None:
    pages = [[T.format(1)], None, [T.format(2)]]
    merges: Any = {(0, 1): [(0, 0)], (0, 2): [(5, 0)], "x": [(0, 0)], (2, 1): [(0, 0)]}
    assert plan_table_merges(pages, merges) == []


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[list[str] | None], dict[Any, list[tuple[int, int]]]]:
    """Pages (about one in five a fallback), half their elements tables, and detected pairs."""
    text = st.text(st.sampled_from("ab-中 ，"), max_size=4)
    element = st.integers(0, 5).flatmap(lambda n: text if n < 3 else st.just(T.format(n)))
    page = st.integers(0, 4).flatmap(
        lambda n: st.none() if n == 0 else st.lists(element, min_size=1, max_size=4)
    )
    pages: list[list[str] | None] = draw(st.lists(page, max_size=6))
    merges: dict[Any, list[tuple[int, int]]] = {}
    for p in range(len(pages) - 1):
        first, second = pages[p], pages[p + 1]
        if first is None or second is None:
            continue  # the toolkit pairs consecutive successful pages only
        pairs = draw(st.lists(st.tuples(
            st.integers(0, len(first) - 1), st.integers(0, len(second) - 1)
        ), max_size=3))  # fmt: skip
        if pairs or draw(st.booleans()):
            merges[(p, p + 1)] = pairs
    return pages, merges


def _one_to_one(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i, j in pairs:
        if all(i != a and j != b for a, b in out):
            out.append((i, j))
    return out


@settings(max_examples=300)
@given(documents())
def test_plan_matches_the_toolkits_batches(doc: Any) -> None:
    pages, merges = doc
    toolkit_pairs = [
        (p1, p2, i, j)
        for (p1, p2), pairs in sorted(merges.items())
        for i, j in _one_to_one(pairs)
        if is_table(pages[p1][i]) and is_table(pages[p2][j])
    ]
    assert plan_table_merges(pages, merges) == toolkit_table_batches(toolkit_pairs)


# --- assembly ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "joined"), [
    ("The experi-", "ment", "The experi-ment"),  # hyphen: nothing between, hyphen kept
    ("结束于中", "间的位置", "结束于中间的位置"),  # CJK ideograph: nothing between
    ("结束于，", "继续", "结束于， 继续"),  # full-width comma is not U+4E00-U+9FFF
    ("jumps over", "the dog", "jumps over the dog"),
    ("", "orphan", "orphan"),
])  # fmt: skip
def test_paragraph_join(first: str, second: str, joined: str) -> None:
    pages = [["head", first], [second, "tail"]]
    assert assemble(pages, {(0, 1): [(1, 0)]}, {}) == f"head\n\n{joined}\n\ntail"


def test_fallback_pages_contribute_nothing_and_empty_elements_vanish() -> None:
    pages = [["a", ""], None, ["b"]]
    assert assemble(pages, {}, {}) == "a\n\nb"
    assert assemble([], {}, {}) == ""
    assert assemble([None, None], {}, {}) == ""


def test_merged_table_keeps_no_stray_space_where_the_toolkit_adds_one() -> None:
    pages = [["x", T.format(1)], [T.format(2), "y"]]
    merges = {(0, 1): [(1, 0)]}
    done = {(0, 1, 1, 0): T.format(12)}
    ours = assemble(pages, merges, done)
    assert ours == f"x\n\n{T.format(12)}\n\ny"
    toolkit = toolkit_build_document_text(
        {1: ["x", T.format(1)], 2: [T.format(2), "y"]},
        {(1, 2): [(1, 0)]},
        {(1, 2, 1, 0): T.format(12)},
    )
    assert toolkit == f"x\n\n{T.format(12)} \n\ny"


def test_a_failed_table_merge_keeps_both_fragments() -> None:
    pages = [[T.format(1)], [T.format(2)]]
    assert assemble(pages, {(0, 1): [(0, 0)]}, {}) == f"{T.format(1)} {T.format(2)}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_assemble_to_their_hand_worked_text(name: str) -> None:
    scenario: Scenario = SCENARIOS[name]
    pages = [page_elements(text) for text in scenario.pages]
    merges = {
        key: parse_merge_pairs(answer, len(pages[key[0]]), len(pages[key[1]]))
        for key, answer in scenario.detect.items()
    }
    done: dict[TableKey, str] = {}
    for batch in plan_table_merges(pages, merges):
        results = {}
        for key in batch:
            answer = scenario.table_merges[table_merge_inputs(pages, done, key)]
            merged = parse_table_merge(answer)
            assert merged is not None
            results[key] = merged
        done.update(results)
    assert len(done) == len(scenario.table_merges)
    assert assemble(pages, merges, done) == scenario.document_text


@st.composite
def merged_documents(draw: st.DrawFn) -> Any:
    pages, merges = draw(documents())
    merges = {key: _one_to_one(pairs) for key, pairs in merges.items()}
    table_merges: dict[TableKey, str] = {}
    for (p1, p2), pairs in merges.items():
        for i, j in pairs:
            if is_table(pages[p1][i]) and is_table(pages[p2][j]) and draw(st.booleans()):
                table_merges[(p1, p2, i, j)] = T.format(draw(st.integers(10, 99)))
    return pages, merges, table_merges


@settings(max_examples=500)
@given(merged_documents())
def test_assemble_matches_the_toolkits_build_document_text(doc: Any) -> None:
    pages, merges, table_merges = doc

    def toolkit(skip_consumed: bool) -> str:
        # The toolkit numbers pages from 1 and keeps only successful ones.
        return toolkit_build_document_text(
            {n + 1: list(e) for n, e in enumerate(pages) if e is not None},
            {(a + 1, b + 1): list(pairs) for (a, b), pairs in merges.items()},
            {(a + 1, b + 1, i, j): text for (a, b, i, j), text in table_merges.items()},
            skip_consumed=skip_consumed,
        )

    # Held to the toolkit with its one named change (see toolkit_build_document_text).
    assert assemble(pages, merges, table_merges) == toolkit(skip_consumed=True)


scalar = st.one_of(st.none(), st.integers(-3, 5), st.text(max_size=3), st.booleans(), st.floats())
junk = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner)),
    max_leaves=8,
)
key_junk = st.recursive(  # hashable
    scalar,
    lambda inner: st.one_of(st.tuples(inner, inner), st.tuples(inner, inner, inner, inner)),
    max_leaves=8,
)


@given(
    st.lists(
        st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=3), junk), max_size=3), junk)
    ),
    st.dictionaries(st.one_of(key_junk, st.tuples(st.integers(-1, 4), st.integers(-1, 4))), junk),
    st.dictionaries(key_junk, st.one_of(st.text(max_size=3), junk), max_size=4),
)
def test_assemble_never_raises(pages: Any, merges: Any, table_merges: Any) -> None:
    assert isinstance(assemble(pages, merges, table_merges), str)
    assert isinstance(plan_table_merges(pages, merges), list)


@pytest.mark.parametrize(
    ("last", "joined"),
    [
        ("\u4e00", "\u4e00next"),  # the first CJK ideograph: no space (the toolkit's range)
        ("\u9fff", "\u9fffnext"),  # the last one: no space
        ("\u4dff", "\u4dff next"),  # just before the range: a space
        ("\ua000", "\ua000 next"),  # just after it: a space
        ("-", "-next"),
        ("a", "a next"),
    ],
)
def test_the_joiner_at_the_edges_of_the_cjk_range(last: str, joined: str) -> None:
    pages = [[f"start{last}"], ["next"]]
    assert assemble(pages, {(0, 1): [(0, 0)]}, {}) == f"start{joined}"


T1 = "<table><tr><td>1</td></tr></table>"
T2 = "<table><tr><td>2</td></tr></table>"


@pytest.mark.parametrize(
    "key",
    [
        (0, 1, 1, 0),  # element 1 of page 0: one past its last element
        (0, 1, 0, 1),  # element 1 of page 1: one past its last element
        (1, 1, 0, 0),  # a page merged with itself
        (1, 0, 0, 0),  # pages the wrong way round
        (0, 2, 0, 0),  # page 2 does not exist
    ],
)
def test_table_merges_just_outside_the_pages_are_ignored(key: tuple[int, int, int, int]) -> None:
    pages = [[T1], [T2]]
    assert assemble(pages, {}, {key: "<table>merged</table>"}) == f"{T1}\n\n{T2}"


def test_a_table_merge_naming_a_fallback_page_is_ignored() -> None:
    assert assemble([None, [T2]], {}, {(0, 1, 0, 0): "<table>merged</table>"}) == T2
    assert assemble([[T1], None], {}, {(0, 1, 0, 0): "<table>merged</table>"}) == T1
