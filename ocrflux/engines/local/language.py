"""Character counts and the page's primary language from the script mix of its text."""

from __future__ import annotations

import unicodedata
from collections import defaultdict

# Script (first word of the Unicode character name) -> OCRFlux's primary_language code.
# Latin script is reported as English: telling Latin-script languages apart needs a language
# model the engine does not carry.
_SCRIPTS = {
    "CJK": "zh",
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "HANGUL": "ko",
    "CYRILLIC": "ru",
    "ARABIC": "ar",
    "GREEK": "el",
    "HEBREW": "he",
    "THAI": "th",
    "DEVANAGARI": "hi",
    "LATIN": "en",
}
_IDEOGRAPHIC = {"CJK", "HIRAGANA", "KATAKANA", "HANGUL"}
_LETTER_WEIGHT = 0.25


def count_characters(text: str) -> int:
    """Non-whitespace characters."""
    return sum(1 for ch in text if not ch.isspace())


def primary_language(text: str) -> str | None:
    """The language of the script with the most text; None when there are no letters.

    A CJK character carries about a word, an alphabetic letter a fraction of one, so letters
    are weighted down. Kana among the CJK characters (a fifth or more) make the page Japanese.
    """
    weight: defaultdict[str, float] = defaultdict(float)
    for ch in text:
        if not ch.isalpha():
            continue
        script = unicodedata.name(ch, "").split(" ", 1)[0]
        language = _SCRIPTS.get(script)
        if language is not None:
            weight[language] += 1.0 if script in _IDEOGRAPHIC else _LETTER_WEIGHT
    if not weight:
        return None
    kana, han = weight.pop("ja", 0.0), weight.get("zh", 0.0)
    if kana and kana >= 0.2 * (kana + han):
        return "ja"
    return max(weight, key=weight.__getitem__) if weight else None
