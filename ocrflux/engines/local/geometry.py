"""Boxes, words and text lines in page pixels: the vocabulary of the layout modules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned rectangle: x0 <= x1, y0 <= y1, y growing downwards."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    def contains_point(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def overlap_x(self, other: Box) -> float:
        return max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))

    def overlap_y(self, other: Box) -> float:
        return max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))

    @staticmethod
    def around(points: Iterable[Point]) -> Box:
        xs, ys = zip(*points, strict=True)
        return Box(float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))

    @staticmethod
    def union(boxes: Iterable[Box]) -> Box:
        items = list(boxes)
        return Box(
            min(b.x0 for b in items),
            min(b.y0 for b in items),
            max(b.x1 for b in items),
            max(b.y1 for b in items),
        )


@dataclass(frozen=True, slots=True)
class Word:
    """A word (Latin scripts) or a character (CJK) of a line, with its box.

    `space_before` says whether the recogniser put whitespace between it and the previous
    word of its line, so any run of words joins back into the line's own spelling."""

    text: str
    box: Box
    space_before: bool = True


@dataclass(frozen=True, slots=True)
class TextLine:
    """One text line the recogniser read: 4-point box (clockwise from top-left), text, score."""

    text: str
    quad: Quad
    score: float
    words: tuple[Word, ...]

    @property
    def box(self) -> Box:
        return Box.around(self.quad)


def join_words(words: Sequence[Word]) -> str:
    """The words' text, spaced as the recogniser spaced them."""
    if not words:
        return ""
    parts = [words[0].text]
    parts += [(" " if w.space_before else "") + w.text for w in words[1:]]
    return "".join(parts)


def split_into_words(
    text: str, boxes: Sequence[tuple[str, Box]], line_box: Box
) -> tuple[Word, ...]:
    """Words with `space_before` found by locating each recognised word in the line's text.

    Falls back to one word for the whole line when the word results do not spell the line
    (the recogniser gives none for some lines)."""
    words: list[Word] = []
    pos = 0
    for piece, box in boxes:
        at = text.find(piece, pos) if piece else -1
        if at < 0 or text[pos:at].strip():
            return (Word(text.strip(), line_box, False),)
        words.append(Word(piece, box, bool(words) and at > pos))
        pos = at + len(piece)
    if not words or text[pos:].strip():
        return (Word(text.strip(), line_box, False),)
    return tuple(words)
