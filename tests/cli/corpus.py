"""Folders of generated documents for `ocrflux convert`, and the fake vLLM's answers for them.

Every page of a corpus has its own rendered size, so the fake answers each page with that
page's own Markdown and a result in the wrong file would show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from ocrflux.intake.images import toolkit_size
from tests.documents.pdfs import Page, corrupt_pdf, distinct_sizes, make_pdf, page_json
from tests.support import ROOT, FakeVLLMProcess


class Corpus:
    """Documents written under `root`, with the Markdown the fake will give for each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sizes: Iterator[tuple[float, float]] = iter(distinct_sizes(60))
        self._image_width = 300
        self.answers: dict[str, list[str]] = {}
        self.expected: dict[str, str] = {}  # path relative to root -> document_text

    def pdf(self, name: str, *pages: str) -> Path:
        specs = []
        for text in pages:
            width, height = next(self._sizes)
            spec = Page(width, height, tuple(text.split("\n\n")))
            self.answers[spec.key()] = [page_json(text)]
            specs.append(spec)
        self.expected[name] = "\n\n".join(pages)
        return self._write(name, make_pdf(specs))

    def image(self, name: str, text: str) -> Path:
        """A PNG page (each one a different width, so its own answer)."""
        size = (self._image_width, 800)
        self._image_width += 20
        width, height = toolkit_size(*size, 1024)
        self.answers[f"{width}x{height}"] = [page_json(text)]
        self.expected[name] = text
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, "white").save(path, "PNG")
        return path

    def corrupt(self, name: str) -> Path:
        return self._write(name, corrupt_pdf())

    def _write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def feed(self, fake: FakeVLLMProcess, **extra: Any) -> None:
        """Teach the fake every page's answer (and "no merge" for every page pair)."""
        rules = [{"contains": ["Previous page:"], "answers": ["[]"]}]
        fake.control(page_answers=self.answers, prompt_answers=rules, **extra)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no key or colour settings from outside, wide tables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OCRFLUX_", "FORCE_COLOR", "NO_COLOR", "TTY_", "COLUMNS"))
    }
    # The checkout under test, also from a temporary cwd (the venv may hold another one).
    path = env.get("PYTHONPATH")
    env.update({"COLUMNS": "200", "PYTHONPATH": f"{ROOT}:{path}" if path else str(ROOT), **extra})
    return env


def convert(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`ocrflux convert ARGUMENTS` with stdout and stderr captured (so not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "convert", *arguments],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
