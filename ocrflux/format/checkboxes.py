"""Checkbox normalisation: every box the model writes becomes `[√]` (checked) or `[ ]`.

Checkboxes (`normalize_checkboxes`), outside code and math:

* checked: ☑ ☒ ✓ ✔ √ ■ ▣ ✅ ⊠ 🗹, `[x]` `[X]`, and any bracket holding a tick, e.g. `(√)`, `【✓】`;
* unchecked: ☐ □ ▢ ⬜ 🗆, `[ ]`, and a bracket holding an empty box, e.g. `(□)`;
* `(x)` `(X)` `( )` and their full-width forms `（x）` `（ ）` `【 】` are boxes only when the same
  line holds another box ("性别：(x) 男 ( ) 女"), because alone they are usually an enumerator
  ("(x)" = item ten) or an exam blank ("正确的是（ ）");
* never touched: code spans and fences, math (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`),
  `√` followed by a digit, a Latin letter or a bracket (`√2`, `√(x+1)`), and brackets glued to a
  preceding letter or digit or followed by `(` (`f(x)`, `R[x]`, `[x](link)`).

A box never moves to another line; a space is put between a box and the text it labels.
"""

from __future__ import annotations

import bisect
import re

__all__ = ["CHECKED", "UNCHECKED", "normalize_checkboxes"]

CHECKED = "[√]"
UNCHECKED = "[ ]"

_TICKS = "☑☒✓✔√■▣✅⊠🗹"
_EMPTIES = "☐□▢⬜🗆"
_BOX = re.compile(
    rf"(?P<open>[\[(（【［])[ \u3000]{{0,2}}(?P<inner>[xX{_TICKS}{_EMPTIES}]\ufe0f?)?"
    rf"[ \u3000]{{0,2}}(?P<close>[\])）】］])"
    rf"|(?P<glyph>[{_TICKS}{_EMPTIES}])\ufe0f?"
)
_PAIRS = {"[": "]", "(": ")）", "（": ")）", "【": "】", "［": "］"}
_PROTECTED_START = re.compile(r"`|\$|\\[(\[]")
_NEXT_BACKTICK_OR_LINE = re.compile(r"[`\n]")
_NEXT_DOLLAR_OR_LINE = re.compile(r"[$\n]")
_CLOSERS = {"$$": "$$", "\\(": "\\)", "\\[": "\\]"}
_MATH_AFTER_ROOT = re.compile(r"[0-9A-Za-z({\[]")
# A glyph before a box is a rejected one (e.g. the root in "√[ ]"); a space would make it a box
# on the next pass, so normalising twice would differ from normalising once.
_NO_SPACE_BEFORE = set("([{（【［<>|:：、,，\"'“‘" + _TICKS + _EMPTIES)
_NO_SPACE_AFTER = set(")]}）】］<>|,，.。;；:：、!！?？\"'”’")


def _classify(text: str, box: re.Match[str]) -> tuple[bool, bool] | None:
    """(checked, strong) for a real box, None when the match is ordinary text."""
    before = text[box.start() - 1] if box.start() else ""
    after = text[box.end()] if box.end() < len(text) else ""
    glyph = box.group("glyph")
    if glyph:
        if glyph == "√" and _MATH_AFTER_ROOT.match(after):
            return None
        return glyph in _TICKS, True
    opener, inner = box.group("open"), box.group("inner")
    if box.group("close") not in _PAIRS[opener]:
        return None
    if (before.isascii() and before.isalnum()) or after in ("(", "["):
        return None
    if inner is None:
        # "[]" and "()" are not boxes; a blank needs at least one space inside.
        if box.end() - box.start() == 2:
            return None
        return False, opener == "["
    mark = inner[0]
    if mark in _TICKS or mark in _EMPTIES:
        return mark in _TICKS, True
    return True, opener == "["  # x / X


def _protected_spans(text: str) -> list[tuple[int, int]]:
    r"""Code fences, code spans and math, left to right, in linear time.

    The spans of the regex
    ```` ```.*?(?:```|\Z)|`[^`\n]+`|\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\] ````
    (DOTALL), which rescans to the end of the text from every `\(` without a `\)` (60,000
    characters of `\(`: minutes). A closer missing after one opener is missing after every
    later one, so each is looked for once.
    """
    spans: list[tuple[int, int]] = []
    missing: set[str] = set()  # openers whose closer no longer occurs
    pos = 0
    while found := _PROTECTED_START.search(text, pos):
        start = found.start()
        end = _protected_end(text, start, missing)
        if end is None:
            pos = start + 1
        else:
            spans.append((start, end))
            pos = end
    return spans


def _protected_end(text: str, start: int, missing: set[str]) -> int | None:
    """Where the protected span opening at `start` ends (None: it is not one)."""
    if text.startswith("```", start):
        close = text.find("```", start + 3)
        return len(text) if close < 0 else close + 3  # an unclosed fence runs to the end
    first = text[start]
    opener = text[start : start + 2]
    if opener in _CLOSERS and opener not in missing:
        close = text.find(_CLOSERS[opener], start + 2)
        if close >= 0:
            return close + 2
        missing.add(opener)
    if first == "\\":
        return None
    # `x` or $x$: at least one character, not the delimiter, on the same line.
    found = (_NEXT_BACKTICK_OR_LINE if first == "`" else _NEXT_DOLLAR_OR_LINE).search(
        text, start + 1
    )
    if found is None or found.group() == "\n" or found.start() == start + 1:
        return None
    return found.end()


def normalize_checkboxes(text: str) -> str:
    """Rewrite every checkbox notation as `[√]` or `[ ]` (rules in the module docstring)."""
    protected = _protected_spans(text)
    starts = [s for s, _ in protected]
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    found: list[tuple[int, int, bool, bool, int]] = []  # start, end, checked, strong, line
    for box in _BOX.finditer(text):
        i = bisect.bisect_right(starts, box.start()) - 1
        if i >= 0 and box.start() < protected[i][1]:
            continue
        kind = _classify(text, box)
        if kind is not None:
            line = bisect.bisect_right(line_starts, box.start())
            found.append((box.start(), box.end(), *kind, line))
    per_line: dict[int, int] = {}
    for *_, line in found:
        per_line[line] = per_line.get(line, 0) + 1

    out: list[str] = []
    pos = 0
    for start, end, checked, strong, line in found:
        if not strong and per_line[line] < 2:
            continue
        _emit_text(out, text[pos:start])
        if out and out[-1] and not out[-1][-1].isspace() and out[-1][-1] not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(CHECKED if checked else UNCHECKED)
        pos = end
        nxt = text[end : end + 1]
        if nxt and not nxt.isspace() and nxt not in _NO_SPACE_AFTER and not _BOX.match(text, end):
            out.append(" ")
    _emit_text(out, text[pos:])
    return "".join(out)


def _emit_text(out: list[str], chunk: str) -> None:
    if chunk:
        out.append(chunk)
