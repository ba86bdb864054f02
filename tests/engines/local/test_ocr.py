"""The recogniser: bundled models only, no network, 4-point line boxes with text and score."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from rapidocr.utils.download_file import DownloadFile, DownloadFileInput

from ocrflux.engines.local.errors import ModelNotShipped
from ocrflux.engines.local.ocr import MODEL_DIR, Recogniser, model_path, shipped_models
from tests.engines.local.netguard import network_guard
from tests.engines.local.pages import SANS, font


def one_line(text: str) -> np.ndarray:
    image = Image.new("L", (800, 160), 255)
    ImageDraw.Draw(image).text((40, 50), text, font=font(SANS, 30), fill=0)
    return np.asarray(image)


def test_the_guard_refuses_and_records_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    with network_guard(monkeypatch) as attempts:
        with pytest.raises(OSError):
            urllib.request.urlopen("http://198.51.100.7/model.onnx", timeout=1)
        assert attempts
        attempts.clear()


def test_the_guard_catches_rapidocrs_own_download_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What would run if a model were missing: the guard sees it, so a silent fetch cannot
    pass the next test."""
    request = DownloadFileInput(
        file_url="https://www.modelscope.cn/models/RapidAI/RapidOCR/resolve/v3.10.0/x.onnx",
        sha256=None,
        save_path=tmp_path / "x.onnx",
        logger=logging.getLogger("test"),
    )
    with network_guard(monkeypatch) as attempts:
        with pytest.raises(Exception):  # noqa: B017 - rapidocr wraps the refusal its own way
            DownloadFile.run(request)
        assert attempts
        attempts.clear()


def test_loading_and_reading_never_touch_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    with network_guard(monkeypatch) as attempts:
        recogniser = Recogniser(threads=1)
        lines = recogniser.read(one_line("Offline reading works"))
    assert attempts == []
    assert [line.text for line in lines] == ["Offline reading works"]
    line = lines[0]
    assert len(line.quad) == 4 and all(len(p) == 2 for p in line.quad)
    assert 0.5 < line.score <= 1.0
    assert 20 <= line.box.x0 <= 45 and line.box.x1 > 300
    assert "".join(w.text for w in line.words) == "Offlinereadingworks"
    assert [w.space_before for w in line.words] == [False, True, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ocr_version": "PP-OCRv4", "model_type": "mobile"}, "not shipped"),
        ({"lang": "korean"}, "korean"),
        ({"model_type": "server"}, "server"),
    ],
)
def test_a_model_not_shipped_is_refused_not_downloaded(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, str], message: str
) -> None:
    before = shipped_models()
    with network_guard(monkeypatch) as attempts, pytest.raises(ModelNotShipped, match=message):
        Recogniser(**kwargs)
    assert attempts == []
    assert shipped_models() == before


def test_the_default_models_are_the_wheels_own_files() -> None:
    for task, version, kind, lang in [
        ("det", "PP-OCRv6", "small", "ch"),
        ("rec", "PP-OCRv6", "small", "en"),
        ("cls", "PP-OCRv4", "mobile", "ch"),
    ]:
        path = model_path(task, version, kind, lang)
        assert path.parent == MODEL_DIR and path.is_file()


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        Recogniser(threads=0)


def test_a_blank_image_has_no_lines(recogniser: Recogniser) -> None:
    assert recogniser.read(np.full((200, 300), 255, np.uint8)) == []
