"""Lint, type and layer checks are part of the suite: `ruff`, `mypy` and `lint-imports` clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_layers_hold() -> None:
    """The import contracts in pyproject.toml ([tool.importlinter]): data flows one way."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
