"""The vLLM engine: reads a page with OCRFlux-3B's trained prompt, decoding, rotation, re-asks."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ocrflux.engines.base import MergeAnswer, PageJob, PageResult, TableMergeAnswer
from ocrflux.errors import APIError
from ocrflux.images import ImageRejected, PreparedImage
from ocrflux.page_format import build_page_prompt, parse_page_response
from ocrflux.preparation import ImagePreparer
from ocrflux.settings import Settings
from ocrflux.tokens import estimate_text_tokens
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.engines.vllm")

# The OCRFlux toolkit raises the temperature by this much for each re-ask of a page.
TEMPERATURE_STEP = 0.1
# The toolkit samples with vLLM's SamplingParams defaults. vLLM's server instead defaults to the
# model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05), under
# which a higher temperature changes nothing; so page calls state the toolkit's values.
TOOLKIT_SAMPLING = {"top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0}


class VLLMEngine:
    """Reads pages through the upstream vLLM replicas."""

    name = "vllm"

    def __init__(self, settings: Settings, upstream: Upstream, images: ImagePreparer) -> None:
        self.settings = settings
        self.upstream = upstream
        self.images = images
        self.prompt = build_page_prompt()
        self._prompt_tokens = estimate_text_tokens(self.prompt)

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        """Ask until the answer decodes (raising the temperature), fixing rotation once."""
        max_tokens = job.max_tokens or self.settings.page_max_tokens
        image = await self._fit(image, max_tokens)
        sampling = {**TOOLKIT_SAMPLING, **job.sampling, "max_tokens": max_tokens}
        result = PageResult(page=None, engine=self.name)
        base_temperature = float(sampling.get("temperature") or 0.0)
        attempt, rotated = 0, False
        while True:
            body = self._page_body(image, sampling, base_temperature + TEMPERATURE_STEP * attempt)
            data = await self.upstream.chat(body, job.request_id)
            result.usage.add(data.get("usage"))
            choice = data["choices"][0] if data["choices"] else {}
            result.raw_text = (choice.get("message") or {}).get("content") or ""
            result.finish_reason = choice.get("finish_reason") or "stop"
            page = parse_page_response(result.raw_text)
            if page is None:
                if attempt < self.settings.page_retries:
                    attempt += 1
                    continue
                logger.warning("page answer is not page JSON after %d attempts", attempt + 1)
                return result
            needs_rotation = not page.is_rotation_valid and page.rotation_correction in (
                90,
                180,
                270,
            )
            if needs_rotation and not rotated:
                image = await self.images.rotate(image, page.rotation_correction)
                rotated = True
                continue
            result.page = page
            return result

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        raise NotImplementedError  # the documents pipeline brings the merge prompts

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        raise NotImplementedError  # the documents pipeline brings the merge prompts

    def _page_body(
        self, image: PreparedImage, sampling: dict[str, Any], temperature: float
    ) -> bytes:
        content = [
            {"type": "image_url", "image_url": {"url": image.data_url}},
            {"type": "text", "text": self.prompt},
        ]
        body = {
            **sampling,
            "model": self.settings.ocrflux_model,
            "messages": [{"role": "user", "content": content}],
            "temperature": round(temperature, 3),
        }
        return orjson.dumps(body)

    async def _fit(self, image: PreparedImage, max_tokens: int) -> PreparedImage:
        try:
            (fitted,) = await self.images.fit([image], self._prompt_tokens, max_tokens)
        except ImageRejected as exc:
            raise APIError(
                exc.status, exc.message, param="messages", code="context_length_exceeded"
            ) from exc
        return fitted
