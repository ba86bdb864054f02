"""Lint and type checks are part of the suite: `ruff` clean, and `mypy` clean on the package."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_is_clean() -> None:
    lint = run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatting = run("ruff", "format", "--check", ".")
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


def test_mypy_is_clean_on_the_package() -> None:
    result = run("mypy", "ocrflux")
    assert result.returncode == 0, result.stdout + result.stderr
