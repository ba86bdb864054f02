"""OCRFlux's cross-page merge as pure data: element lists, the model's answers, the assembly.

Follows the toolkit (chatdoc-com/OCRFlux at 71954ad: `client.py` `request()` and
`build_document_text`, `pipeline.py` `process_pdf`) with pages numbered from 0. Model answers
are parsed as data, never evaluated (the toolkit `eval`s the merge-detect answer); anything
malformed means "no merge". Nothing here does I/O, and `assemble` never raises.

Deliberate differences from the toolkit, each losing nothing:
- A merge-detect answer is one-to-one: a pair that reuses an element already paired is
  dropped (first wins). The toolkit applies repeats in order; for two tables that keeps only
  the last merge and silently loses a fragment, and an exact repeat appends a stray space.
- Joining onto a fragment that an earlier merge already consumed adds nothing. The toolkit
  appends a space there, so every merged table ends in `"</table> "` and no longer reads as
  a table to anything that checks its end (Markdown table output, `is_table`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

Pair = tuple[int, int]
PagePair = tuple[int, int]  # (page, next page), 0-based
TableKey = tuple[int, int, int, int]  # (page 1, page 2, element on page 1, element on page 2)
Pages = Sequence[Sequence[str] | None]  # element lists; None for a fallback page

# A real answer lists a few pairs; anything longer is not worth reading.
MAX_ANSWER_CHARS = 4096
_PAIR = r"(?:\([0-9]{1,6},[0-9]{1,6}\)|\[[0-9]{1,6},[0-9]{1,6}\])"
# Whitespace is removed before matching, which keeps this pattern free of backtracking.
_PAIRS_ANSWER = re.compile(rf"\[(?:{_PAIR}(?:,{_PAIR})*,?)?\]")
_NUMBERS = re.compile(r"[0-9]+")
_SPLIT_NUMBER = re.compile(r"[0-9]\s+[0-9]")
_TABLE_TAG = re.compile(r"<(/?)table\b[^>]*>", re.IGNORECASE)


def page_elements(page_markdown: str) -> list[str]:
    """A page's elements as the merge prompt numbers them: blocks between blank lines, without
    `<Image>...</Image>` placeholders (the toolkit's rule; tables are HTML already)."""
    return [
        element
        for element in page_markdown.split("\n\n")
        if not (element.startswith("<Image>") and element.endswith("</Image>"))
    ]


def is_table(element: str) -> bool:
    """The toolkit's test for a table element (what a table merge is asked for)."""
    return (
        isinstance(element, str) and element.startswith("<table>") and element.endswith("</table>")
    )


def _one_to_one(pairs: Sequence[Pair], len1: int, len2: int) -> list[Pair] | None:
    """Pairs in range with each element used once (first wins); None if any is out of range."""
    seen1: set[int] = set()
    seen2: set[int] = set()
    out: list[Pair] = []
    for i, j in pairs:
        if not (0 <= i < len1 and 0 <= j < len2):
            return None
        if i in seen1 or j in seen2:
            continue
        seen1.add(i)
        seen2.add(j)
        out.append((i, j))
    return out


def parse_merge_pairs(answer: str, len1: int, len2: int) -> list[Pair]:
    """The merge-detect answer `[(i, j), ...]` as validated pairs; [] for anything else.

    Only a list of two-integer tuples (or lists) is read, whitespace anywhere between tokens.
    Code, nesting, other types, an index outside its page and an over-long answer all mean
    "no merge". Pairs reusing an element are dropped (see the module docstring).
    """
    if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
        return []
    if _SPLIT_NUMBER.search(answer):  # "1 2" must not become 12 below
        return []
    compact = "".join(answer.split())
    if not _PAIRS_ANSWER.fullmatch(compact):
        return []
    numbers = [int(n) for n in _NUMBERS.findall(compact)]
    pairs = list(zip(numbers[::2], numbers[1::2], strict=True))
    return _one_to_one(pairs, len1, len2) or []


def parse_table_merge(answer: str) -> str | None:
    """The table-merge answer if it is exactly one `<table>...</table>` (nested tables allowed,
    surrounding whitespace ignored); None means "no merge"."""
    if not isinstance(answer, str):
        return None
    table = answer.strip()
    if not is_table(table):
        return None
    depth = 0
    for tag in _TABLE_TAG.finditer(table):
        depth += -1 if tag.group(1) else 1
        if depth == 0 and tag.end() != len(table):
            return None  # the first table closes before the end: more than one table
        if depth < 0:
            return None
    return table if depth == 0 else None


# --- the table-merge stage --------------------------------------------------------------------


def _page(pages: Pages, index: object) -> Sequence[str] | None:
    if type(index) is not int or not 0 <= index < len(pages):
        return None
    page = pages[index]
    return page if isinstance(page, Sequence) and not isinstance(page, str) else None


def _valid_pairs(pages: Pages, key: object, pairs: object) -> list[Pair]:
    """A merges entry checked against the pages; [] if anything does not fit."""
    if not (isinstance(key, tuple) and len(key) == 2 and isinstance(pairs, Sequence)):
        return []
    first, second = _page(pages, key[0]), _page(pages, key[1])
    if first is None or second is None or key[0] >= key[1]:
        return []
    if not all(
        isinstance(p, (tuple, list)) and len(p) == 2 and all(type(n) is int for n in p)
        for p in pairs
    ):
        return []
    return _one_to_one([(p[0], p[1]) for p in pairs], len(first), len(second)) or []


def _page_pairs(merges: Mapping[PagePair, Sequence[Pair]]) -> list[PagePair]:
    """The merges' keys that are two page numbers, ascending (the toolkit's page order)."""
    return sorted(
        k for k in merges if isinstance(k, tuple) and len(k) == 2 and all(type(n) is int for n in k)
    )


def _table_keys(pages: Pages, merges: Mapping[PagePair, Sequence[Pair]]) -> list[TableKey]:
    keys: list[TableKey] = []
    for key in _page_pairs(merges):
        for i, j in _valid_pairs(pages, key, merges[key]):
            first, second = pages[key[0]], pages[key[1]]
            assert first is not None and second is not None  # _valid_pairs checked
            if is_table(first[i]) and is_table(second[j]):
                keys.append((key[0], key[1], i, j))
    return keys


def plan_table_merges(
    pages: Pages, merges: Mapping[PagePair, Sequence[Pair]]
) -> list[list[TableKey]]:
    """The table-merge calls in the toolkit's order: batches to run one after another.

    Detected pairs whose two elements are both tables, by descending first page; a batch ends
    before a call whose second fragment is the first fragment of a call in the batch. So a
    table over pages 0-2 merges 1+2 first, then 0 with that result (`table_merge_inputs`).
    Calls within a batch are independent and may run concurrently.
    """
    keys = sorted(_table_keys(pages, merges), key=lambda k: -k[0])  # stable, as the toolkit
    batches: list[list[TableKey]] = []
    for key in keys:
        if batches and (key[1], key[3]) not in {(k[0], k[2]) for k in batches[-1]}:
            batches[-1].append(key)
        else:
            batches.append([key])
    return batches


def table_merge_inputs(
    pages: Pages, table_merges: Mapping[TableKey, str], key: TableKey
) -> tuple[str, str]:
    """The two tables the call for `key` sends: a fragment already merged with its own next
    fragment (an earlier batch) is replaced by that merge's result, as in the toolkit."""
    done = {(k[0], k[2]): text for k, text in table_merges.items()}
    first, second = pages[key[0]], pages[key[1]]
    if first is None or second is None:
        raise ValueError(f"table merge {key} names a fallback page")
    return done.get((key[0], key[2]), first[key[2]]), done.get((key[1], key[3]), second[key[3]])


# --- assembly ---------------------------------------------------------------------------------


def _joiner(first: str) -> str:
    # Nothing after a hyphen or a CJK ideograph (U+4E00-U+9FFF), as the toolkit; else a space.
    if not first or first[-1] == "-" or "\u4e00" <= first[-1] <= "\u9fff":
        return ""
    return " "


def assemble(
    pages: Pages,
    merges: Mapping[PagePair, Sequence[Pair]],
    table_merges: Mapping[TableKey, str],
) -> str:
    """The merged document, as the toolkit's `build_document_text` builds it.

    Merged tables replace their first fragment; every detected pair then joins its second
    element onto its first (see `_joiner`) and removes it; empty elements are dropped and the
    rest joined with blank lines. Fallback pages (None) contribute nothing. Entries that do
    not fit the pages are ignored; this never raises.
    """
    texts: dict[int, list[str]] = {
        n: [e if isinstance(e, str) else "" for e in elements]
        for n, elements in enumerate(pages)
        if isinstance(elements, Sequence) and not isinstance(elements, str)
    }
    table_keys = [
        k
        for k, v in table_merges.items()
        if isinstance(k, tuple)
        and len(k) == 4
        and isinstance(v, str)
        and all(type(n) is int for n in k)
        and k[0] < k[1]
        and k[0] in texts
        and k[1] in texts
        and 0 <= k[2] < len(texts[k[0]])
        and 0 <= k[3] < len(texts[k[1]])
    ]
    for p1, p2, i, j in sorted(table_keys, key=lambda k: -k[0]):
        texts[p1][i] = table_merges[(p1, p2, i, j)]
        texts[p2][j] = ""
    for key in sorted(_page_pairs(merges), key=lambda k: -k[0]):
        for i, j in _valid_pairs(pages, key, merges[key]):
            p1, p2 = key
            second = texts[p2][j]
            if second:  # the toolkit adds a separator even when this is already consumed
                texts[p1][i] += _joiner(texts[p1][i]) + second
                texts[p2][j] = ""
    return "\n\n".join(e for n in sorted(texts) for e in texts[n] if e)
