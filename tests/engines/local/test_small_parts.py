"""Language from the script mix, character counts, skew, availability, word spacing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from ocrflux.engines.local import availability
from ocrflux.engines.local.geometry import Box, join_words, split_into_words
from ocrflux.engines.local.language import count_characters, primary_language
from ocrflux.engines.local.pixels import deskew_angle, ink_mask
from tests.engines.local.pages import english_form


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Site Safety Inspection", "en"),
        ("现场安全检查记录 PDF", "zh"),
        ("検査の記録をします", "ja"),
        ("안전 점검 기록", "ko"),
        ("Проверка безопасности", "ru"),
        ("2024-05-01 12:00", None),
        ("", None),
    ],
)
def test_primary_language(text: str, language: str | None) -> None:
    assert primary_language(text) == language


def test_count_characters_skips_whitespace() -> None:
    assert count_characters(" a b\n中文 ") == 4


def test_deskew_finds_a_two_degree_rotation() -> None:
    page = english_form().image.convert("L")
    turned = page.rotate(2.0, expand=True, fillcolor=255)
    assert abs(deskew_angle(np.asarray(turned)) + 2.0) <= 0.3
    assert abs(deskew_angle(np.asarray(page))) <= 0.3


def test_a_blank_or_faint_page_has_no_ink() -> None:
    noise = np.asarray(Image.effect_noise((200, 200), 3).point(lambda v: 250 + (v - 128) // 40))
    assert ink_mask(noise.astype(np.uint8)).max() == 0
    assert deskew_angle(np.full((100, 100), 255, np.uint8)) == 0.0


def test_check_available(monkeypatch: pytest.MonkeyPatch) -> None:
    assert availability.check_available() is None
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a)
    )
    message = availability.check_available()
    assert message is not None and "\n" not in message
    assert "rapidocr" in message and "pip install -e '.[cpu]'" in message


def test_words_keep_the_lines_spacing() -> None:
    box = Box(0, 0, 100, 20)
    words = split_into_words(
        "J. Smith 张伟", [("J.", box), ("Smith", box), ("张", box), ("伟", box)], box
    )
    assert [w.space_before for w in words] == [False, True, True, False]
    assert join_words(words) == "J. Smith 张伟"
    # Word results that do not spell the line fall back to the whole line.
    assert [w.text for w in split_into_words("a b c", [("a", box), ("c", box)], box)] == ["a b c"]
