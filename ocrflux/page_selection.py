"""Mistral's 0-based page selection (`pages`): parsed, bounded and counted without expanding it.

Pure (no I/O, nothing of the request path), so the gateway's `/v1/ocr` and the CLI's `--pages`
share one parser. A range stays its two ends: the pages a selection names are counted from its
merged ranges, and a spec is refused from its length before it is split, so `"0-4999"` written
90,000 times costs what its characters cost, never a set of 450 million pages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_RANGE = re.compile(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?")
# The longest text one range can take: "123456789 - 123456789" and a little space around it.
CHARS_PER_RANGE = 24
EXAMPLE = '(0-based, like "0-5,7")'


class PageSelectionError(ValueError):
    """A page selection that cannot be read, or that names pages the document does not have."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PageSelection:
    """The pages chosen, as inclusive ranges: sorted, none overlapping or touching another."""

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def every(cls, num_pages: int) -> PageSelection:
        """No `pages` given: the whole document."""
        return cls(((0, num_pages - 1),) if num_pages > 0 else ())

    @property
    def count(self) -> int:
        """How many distinct pages are chosen (arithmetic on the ranges, nothing expanded)."""
        return sum(last - first + 1 for first, last in self.ranges)

    def pages(self) -> list[int]:
        """Every chosen page, in order; check `count` against a limit first."""
        return [page for first, last in self.ranges for page in range(first, last + 1)]


def parse_selection(
    spec: str | Sequence[int],
    *,
    num_pages: int | None = None,
    max_ranges: int | None = None,
) -> PageSelection:
    """A list of page numbers (`[0, 2]`) or a string of numbers and inclusive ranges
    (`"0-5,7"`) -> its merged ranges.

    Negative numbers, reversed ranges and anything else are refused, and with `num_pages` the
    first page past the end, with a message naming the document's page count. With
    `max_ranges`, a spec of more numbers and ranges than that is refused before it is read
    (the gateway passes the most pages a document may have read: each range names at least one).
    """
    if isinstance(spec, str):
        found = _parse_text(spec, max_ranges)
    elif isinstance(spec, list | tuple):
        found = _parse_list(spec, max_ranges)
    else:
        raise PageSelectionError('pages must be a list of page numbers or a string like "0-5,7"')
    if num_pages is not None:
        for first, last in found:
            if last >= num_pages:
                raise _out_of_range(first if first >= num_pages else last, num_pages)
    return PageSelection(_merge(found))


def _parse_text(spec: str, max_ranges: int | None) -> list[tuple[int, int]]:
    if max_ranges is not None:
        # A length and a count of commas: refused before a token is split off or parsed.
        if len(spec) > max_ranges * CHARS_PER_RANGE:
            raise _too_long(f"{len(spec):,} characters", max_ranges)
        ranges = spec.count(",") + 1
        if ranges > max_ranges:
            raise _too_long(f"{ranges:,} numbers and ranges", max_ranges)
    if not spec.strip():
        raise PageSelectionError('pages is empty: give page numbers like "0-5,7" or omit it')
    found = []
    for token in spec.split(","):
        match = _RANGE.fullmatch(token)
        if not match:
            raise PageSelectionError(
                f"pages: {token.strip()!r} is not a page number or range {EXAMPLE}"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise PageSelectionError(f"pages: range {first}-{last} is reversed")
        found.append((first, last))
    return found


def _parse_list(spec: Sequence[int], max_ranges: int | None) -> list[tuple[int, int]]:
    if not spec:
        raise PageSelectionError("pages is an empty list: give page numbers or omit it")
    if max_ranges is not None and len(spec) > max_ranges:
        raise _too_long(f"{len(spec):,} page numbers", max_ranges)
    found = []
    for page in spec:
        if not isinstance(page, int) or isinstance(page, bool):
            raise PageSelectionError(f"pages: {page!r} is not a page number")
        if page < 0:
            raise PageSelectionError(f"pages: page {page} is negative (pages are 0-based)")
        found.append((page, page))
    return found


def _merge(found: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(found):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def _too_long(size: str, max_ranges: int) -> PageSelectionError:
    return PageSelectionError(
        f"pages is {size}, more than the {max_ranges:,} pages a document may have read: "
        'give ranges like "0-99" instead of every number'
    )


def _pages_word(n: int) -> str:
    return "1 page (0)" if n == 1 else f"{n} pages (0-{n - 1})"


def _out_of_range(page: int, num_pages: int) -> PageSelectionError:
    if num_pages == 0:
        return PageSelectionError(f"page {page} is out of range: the document has no pages")
    return PageSelectionError(
        f"page {page} is out of range: the document has {_pages_word(num_pages)}"
    )
