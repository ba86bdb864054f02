"""`LocalPage`: what the local engine returns for one page image."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocalPage:
    """One page read by the local engine.

    `markdown` is in the style of OCRFlux's `natural_text`: blocks separated by blank lines,
    headings as `# `, checkboxes as `[√]` / `[ ]`, tables as plain HTML; "" for an empty page.
    `characters` counts the recognised non-whitespace characters and `lines` the text lines the
    recogniser found (honest units for usage); `primary_language` comes from the script mix.
    """

    markdown: str
    characters: int
    lines: int
    primary_language: str | None
    seconds: float
