"""The vLLM engine: reads a page the way OCRFlux-3B was trained to read it.

A page call is what the toolkit sends (chatdoc-com/OCRFlux `pipeline.py`): one user message
with the trained prompt first and the page image second; greedy first, then 0.1 hotter per
re-ask; vLLM's plain sampling (top_p 1, top_k -1, repetition_penalty 1); an answer budget of
all the context the prompt leaves. A page whose answer is not page JSON, or whose call failed,
is asked again; one the model reports as rotated is turned clockwise and asked again.
"""

from __future__ import annotations

import logging
import re

from ocrflux.engines.base import MergeAnswer, PageJob, PageResult, TableMergeAnswer
from ocrflux.engines.vllm_calls import CHAT_TEMPLATE_TEXT, call_body, toolkit_temperature
from ocrflux.engines.vllm_merge import MergeAsker
from ocrflux.errors import APIError
from ocrflux.format.page import build_page_prompt, parse_page_response
from ocrflux.intake.images import ImageRejected, PreparedImage
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.intake.tokens import (
    IMAGE_WRAPPER_TOKENS,
    ContextTooSmall,
    estimate_text_tokens,
    image_tokens,
)
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.engines.vllm")

# With no cap from the client, a page whose prompt leaves less than this for the answer (an
# IMAGE_MAX_SIDE too large for MAX_MODEL_LEN) is shrunk first: a dense page's JSON needs it.
MIN_ANSWER_TOKENS = 1024
# vLLM's 400s that say the request itself cannot work (the budget the client asked for):
# no re-ask can change them.
_CONTEXT_REFUSAL = re.compile(r"context length|max_model_len|max_tokens", re.IGNORECASE)
# The upstream layer already retried these (unreachable, timed out, rate limited): asking the
# same page again at once would only wait again.
_NOT_REASKED = frozenset({429, 503, 504})


def is_request_error(exc: APIError) -> bool:
    """vLLM refusing what the client asked for (a budget the context cannot hold)."""
    if exc.status != 400:
        return False
    return exc.param in ("max_tokens", "max_completion_tokens") or bool(
        _CONTEXT_REFUSAL.search(exc.message)
    )


def page_error(exc: APIError) -> APIError:
    """What a page call's failure means to the client: the gateway built that call, so a 4xx
    from vLLM is the model server refusing the gateway (502), not the client's mistake; a 429
    (too busy) stays one, so that the client backs off."""
    if exc.status >= 500 or exc.status == 429:
        return exc
    return APIError(
        502,
        f"the model server refused a page call (HTTP {exc.status}): {exc.message}",
        code="upstream_error",
    )


class VLLMEngine:
    """Reads pages through the upstream vLLM replicas."""

    name = "vllm"

    def __init__(self, settings: Settings, upstream: Upstream, images: ImagePreparer) -> None:
        self.settings = settings
        self.upstream = upstream
        self.images = images
        self.merges = MergeAsker(settings, upstream)
        self.prompt = build_page_prompt()
        self._text_tokens = estimate_text_tokens(CHAT_TEMPLATE_TEXT + self.prompt)

    def prompt_tokens(self, width: int, height: int) -> int:
        """A page call's prompt tokens: exact for the image, deliberately high for the text."""
        return self._text_tokens + image_tokens(width, height) + IMAGE_WRAPPER_TOKENS

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        """Ask until the answer decodes (0.1 hotter per re-ask), turning the page once if the
        model says it is rotated. Never raises for a page: after its re-asks it is a fallback
        (raw text, or `error` when no answer came at all); raises `APIError` only when the
        client's request cannot work (a budget the context cannot hold)."""
        image, budget = await self._budget(image, job)
        max_tokens: int | None = budget
        result = PageResult(page=None, engine=self.name)
        attempt, rotated = 0, False
        while True:
            body = self._body(self.prompt, image.data_url, toolkit_temperature(attempt), max_tokens)
            try:
                data = await self.upstream.chat(body, job.request_id, flow=job.flow_key)
            except APIError as exc:
                if is_request_error(exc):
                    if job.max_tokens is not None:
                        raise  # the client's budget: no page of this request can succeed
                    if max_tokens is not None:
                        # Our estimate of the prompt fell short (a tokenizer denser than
                        # Qwen's) and this vLLM refuses rather than clamps (0.32 clamps):
                        # its own default is exactly the room that is left.
                        logger.warning("vLLM refused the page budget %d; using its own", max_tokens)
                        max_tokens = None
                        continue
                # A call the upstream layer has already retried would only wait again.
                again = not is_request_error(exc) and exc.status not in _NOT_REASKED
                if again and attempt < self.settings.page_retries:
                    attempt += 1
                    continue
                logger.warning(
                    "page call failed after %d attempts: %d %s", attempt + 1, exc.status, exc.code
                )
                # An earlier answer, even one that is not page JSON, is still the page's text.
                if not result.raw_text:
                    result.error = page_error(exc)
                return result
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
                image = await self._rotated(image, page.rotation_correction)
                rotated = True
                continue
            result.page = page
            return result

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        return await self.merges.detect_merges(previous, following, job)

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        return await self.merges.merge_tables(first, second, job)

    def _body(
        self, text: str, image_data_url: str, temperature: float, max_tokens: int | None
    ) -> bytes:
        return call_body(self.settings.ocrflux_model, text, image_data_url, temperature, max_tokens)

    def check_page(self, width: int, height: int, job: PageJob) -> None:
        """A client max_tokens that leaves no room for a page of this size: a 400 with the
        numbers (the page is not shrunk below the size the model was trained on)."""
        limit = self.settings.max_model_len
        prompt = self.prompt_tokens(width, height)
        if job.max_tokens is not None and prompt + job.max_tokens > limit:
            raise APIError(
                400,
                f"max_tokens is {job.max_tokens:,}, but a {width}x{height} page "
                f"needs ~{prompt:,} of the model's {limit:,}-token context, leaving "
                f"{max(limit - prompt, 0):,} for its answer (lower max_tokens, or leave it "
                "unset to give each page all the room there is)",
                param="max_tokens",
                code="context_length_exceeded",
            )

    async def _budget(self, image: PreparedImage, job: PageJob) -> tuple[PreparedImage, int]:
        """The page (as prepared) and its answer budget: the room the context leaves, capped by
        the client's max_tokens and PAGE_MAX_TOKENS. A client cap larger than the room is a 400
        with the numbers: the page is not shrunk below the size the model was trained on."""
        self.check_page(image.width, image.height, job)
        limit = self.settings.max_model_len
        prompt = self.prompt_tokens(image.width, image.height)
        if job.max_tokens is None and limit - prompt < MIN_ANSWER_TOKENS:
            image = await self._fit(image, MIN_ANSWER_TOKENS)
            prompt = self.prompt_tokens(image.width, image.height)
        caps = [c for c in (job.max_tokens, self.settings.page_max_tokens) if c is not None]
        return image, min([limit - prompt, *caps])

    async def _fit(self, image: PreparedImage, max_tokens: int) -> PreparedImage:
        try:
            (fitted,) = await self.images.fit([image], self._text_tokens, max_tokens)
        except ContextTooSmall as exc:
            raise APIError(
                exc.status, exc.message, param="messages", code="context_length_exceeded"
            ) from exc
        except ImageRejected as exc:  # its pixels could not be decoded to shrink it
            raise APIError(exc.status, exc.message, code="invalid_image") from exc
        return fitted

    async def _rotated(self, image: PreparedImage, degrees: int) -> PreparedImage:
        """The page turned as the model asks; a 400 when its pixels cannot be decoded (a valid
        header is all a page forwarded as sent has shown so far)."""
        try:
            return await self.images.rotate(image, degrees)
        except ImageRejected as exc:
            raise APIError(exc.status, exc.message, code="invalid_image") from exc
