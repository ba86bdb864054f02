"""The page engine the settings ask for: vLLM, the local engine, or vLLM with a local fallback."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from ocrflux.engines.base import PageEngine
from ocrflux.engines.failover import FailoverEngine
from ocrflux.engines.local.availability import check_available
from ocrflux.engines.local.engine import LocalEngine
from ocrflux.engines.vllm import VLLMEngine
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream


class LocalEngineMissing(RuntimeError):
    """The settings select the local engine, but the `cpu` extra is not installed."""


def missing_local_engine(settings: Settings) -> str | None:
    """One line saying what to install when the settings need the local engine and it cannot
    run here; None when nothing is missing."""
    if not settings.local_engine_wanted:
        return None
    missing = check_available()
    if (
        missing is None
        and settings.local_recogniser == "tesseract"
        and not shutil.which("tesseract")
    ):
        missing = (
            "LOCAL_RECOGNISER=tesseract needs the tesseract binary: apt-get install tesseract-ocr"
        )
    if missing is None:
        return None
    setting = "OCR_BACKEND" if settings.ocr_backend == "local" else "FALLBACK_BACKEND"
    return f"{setting}=local: {missing}"


@dataclass
class Engines:
    """The engine pages are read by, and the local engine inside it (started by the lifespan)."""

    page: PageEngine
    local: LocalEngine | None

    @property
    def backend(self) -> str:
        """What /health and /ready report: "vllm", "local" or "vllm+local" (with fallback)."""
        if isinstance(self.page, FailoverEngine):
            return "vllm+local"
        return self.page.name


def require_local_engine(settings: Settings) -> None:
    """Raise `LocalEngineMissing` when the settings need the local engine and it cannot run."""
    message = missing_local_engine(settings)
    if message is not None:
        raise LocalEngineMissing(message)


def build_engines(settings: Settings, upstream: Upstream, images: ImagePreparer) -> Engines:
    """OCR_BACKEND's engine, wrapped for FALLBACK_BACKEND (see `require_local_engine`)."""
    local = None
    if settings.local_engine_wanted:
        local = LocalEngine.create(
            settings.local_workers,
            settings.local_threads,
            max_rss_bytes=settings.local_worker_max_rss_mb * 1024 * 1024,
            tesseract=settings.local_tesseract,
            recogniser=settings.local_recogniser,
        )
    if settings.ocr_backend == "local":
        assert local is not None
        return Engines(local, local)
    vllm = VLLMEngine(settings, upstream, images)
    if local is not None:
        return Engines(FailoverEngine(vllm, local, upstream), local)
    return Engines(vllm, None)
