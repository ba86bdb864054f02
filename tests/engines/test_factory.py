"""Which engine the settings build, and the start-up refusal without the `cpu` extra."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import ValidationError

from ocrflux.app import create_app
from ocrflux.engines import factory
from ocrflux.engines.factory import (
    LocalEngineMissing,
    build_engines,
    missing_local_engine,
)
from ocrflux.engines.failover import FailoverEngine
from ocrflux.engines.local.engine import LocalEngine
from ocrflux.engines.vllm import VLLMEngine
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream

MISSING = "the local OCR engine needs rapidocr: install with pip install -e '.[cpu]'"


@pytest_asyncio.fixture
async def parts() -> AsyncIterator[tuple[Upstream, ImagePreparer]]:
    settings = Settings()
    upstream, images = Upstream(settings), ImagePreparer(settings)
    yield upstream, images
    await images.aclose()
    await upstream.aclose()


@pytest.mark.parametrize(
    ("env", "page_engine", "local", "backend"),
    [
        ({}, VLLMEngine, False, "vllm"),
        ({"ocr_backend": "local"}, LocalEngine, True, "local"),
        ({"fallback_backend": "local"}, FailoverEngine, True, "vllm+local"),
        ({"ocr_backend": "local", "fallback_backend": "local"}, LocalEngine, True, "local"),
    ],
)
async def test_the_settings_choose_the_engine(
    parts: tuple[Upstream, ImagePreparer],
    env: dict[str, str],
    page_engine: type,
    local: bool,
    backend: str,
) -> None:
    engines = build_engines(Settings(**env), *parts)  # type: ignore[arg-type]
    assert isinstance(engines.page, page_engine)
    assert (engines.local is not None) is local
    assert engines.backend == backend
    if engines.local is not None:
        assert (engines.local.pool.workers, engines.local.pool.threads_per_worker) == (2, 1)
        await engines.local.aclose()  # never started: no process to wait for


def test_local_workers_and_threads_reach_the_pool(parts: tuple[Upstream, ImagePreparer]) -> None:
    settings = Settings(ocr_backend="local", local_workers=3, local_threads=2)
    local = build_engines(settings, *parts).local
    assert local is not None
    assert (local.pool.workers, local.pool.threads_per_worker) == (3, 2)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"ocr_backend": "local"}, "OCR_BACKEND"),
        ({"fallback_backend": "local"}, "FALLBACK_BACKEND"),
    ],
)
def test_without_the_extra_start_up_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], setting: str
) -> None:
    monkeypatch.setattr(factory, "check_available", lambda: MISSING)
    settings = Settings(**env)  # type: ignore[arg-type]
    assert missing_local_engine(settings) == f"{setting}=local: {MISSING}"
    with pytest.raises(LocalEngineMissing, match=r"pip install -e '\.\[cpu\]'"):
        create_app(settings)


def test_the_vllm_backend_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "check_available", lambda: MISSING)
    assert missing_local_engine(Settings()) is None
    create_app(Settings())


def test_with_the_extra_nothing_is_missing() -> None:
    assert missing_local_engine(Settings(ocr_backend="local")) is None


@pytest.mark.parametrize("setting", ["ocr_backend", "fallback_backend"])
def test_the_local_engine_does_not_forward_requests_as_they_are(setting: str) -> None:
    with pytest.raises(ValidationError, match="PROMPT_MODE=passthrough"):
        Settings(prompt_mode="passthrough", **{setting: "local"})  # type: ignore[arg-type]
