"""The render pool's tasks (ocrflux.documents.raster), run in this process to count their work."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, TiffImagePlugin

from ocrflux.documents.raster import inspect_document, render_page
from tests.documents.pdfs import deep_tiff

MAX_PIXELS = 64_000_000
CPU = 60.0  # seconds: far above any task here
FRAMES = 2000


@pytest.fixture
def ifd_loads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], int]:
    """How many TIFF directories (IFDs) Pillow reads while a call runs."""
    loads = [0]
    load = TiffImagePlugin.ImageFileDirectory_v2.load

    def counting(self: TiffImagePlugin.ImageFileDirectory_v2, fp: Any) -> None:
        loads[0] += 1
        load(self, fp)

    monkeypatch.setattr(TiffImagePlugin.ImageFileDirectory_v2, "load", counting)

    def count(call: Callable[[], Any]) -> int:
        loads[0] = 0
        call()
        return loads[0]

    return count


def shade(rendered: tuple[str, int, int, int]) -> int:
    url = rendered[0]
    png = base64.b64decode(url.split(",", 1)[1])
    return int(Image.open(io.BytesIO(png)).convert("L").getpixel((512, 512)))


@pytest.mark.parametrize("deflate", [False, True])
def test_a_deep_tiff_frame_costs_what_the_first_frames_do(
    tmp_path: Path, ifd_loads: Callable[[Callable[[], Any]], int], deflate: bool
) -> None:
    # Pages 4000-4999 of a 5,000-frame TIFF took 87.5 s: each page walked the frame chain
    # from the start (frame k read k directories), so a document's pages cost O(frames^2).
    path = tmp_path / "deep.tiff"
    path.write_bytes(deep_tiff(FRAMES, deflate=deflate))
    opened = ifd_loads(lambda: inspect_document(str(path), "tiff", MAX_PIXELS, CPU))
    assert opened <= 3 * FRAMES  # one pass over the chain (and its frames' sizes)

    def work(first: int) -> list[int]:
        """The directories read to render each of pages first..first+4."""
        return [
            ifd_loads(lambda i=i: render_page(str(path), "tiff", i, 1024, MAX_PIXELS, CPU))
            for i in range(first, first + 5)
        ]

    early, late = work(1), work(FRAMES - 5)
    assert late == early  # the same work, wherever the frame is
    assert max(late) <= 3  # the header's, then the frame's (read twice by Pillow)
    for index in (0, 1, 1000, FRAMES - 1):  # and each page is its own frame
        assert shade(render_page(str(path), "tiff", index, 1024, MAX_PIXELS, CPU)) == index % 250
