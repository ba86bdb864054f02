"""The vLLM engine's cross-page calls: OCRFlux-3B's element-merge-detect and table-merge prompts.

Asked exactly as the toolkit asks them (`client.py` `build_element_merge_detect_query` and
`build_html_table_merge_query`): one user message, the prompt text first, then a 28x28 black
image (the model was trained with one image per prompt), greedy first and re-asked with the
temperature raised by 0.1 while the answer does not parse. Answers are parsed as data
(`ocrflux.format.merge`), never evaluated; whatever fails means "no merge" — a merge is an
improvement, and never a reason to fail a document.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import TypeVar

import pybase64
from PIL import Image

from ocrflux.engines.base import MergeAnswer, PageJob, TableMergeAnswer
from ocrflux.engines.vllm_calls import CHAT_TEMPLATE_TEXT, call_body, toolkit_temperature
from ocrflux.errors import APIError
from ocrflux.format.merge import parse_merge_pairs, parse_table_merge
from ocrflux.format.page import build_element_merge_detect_prompt, build_html_table_merge_prompt
from ocrflux.intake.tokens import IMAGE_WRAPPER_TOKENS, estimate_text_tokens, image_tokens
from ocrflux.protocol import Usage
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.engines.vllm")

T = TypeVar("T")
# Below this much room for the answer a call is not worth making.
MIN_ANSWER_TOKENS = 16


def _blank_image_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), color="black").save(buffer, format="PNG")
    return "data:image/png;base64," + pybase64.b64encode(buffer.getvalue()).decode("ascii")


BLANK_IMAGE_URL = _blank_image_url()
_BLANK_IMAGE_TOKENS = image_tokens(28, 28) + IMAGE_WRAPPER_TOKENS


class MergeAsker:
    """Asks the merge prompts through the upstream, with the toolkit's re-asks."""

    def __init__(self, settings: Settings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        prompt = build_element_merge_detect_prompt(previous, following)

        def parse(answer: str) -> list[tuple[int, int]] | None:
            pairs = parse_merge_pairs(answer, len(previous), len(following))
            # [] is both "nothing to merge" and "could not read it": only the former is final.
            return pairs if pairs or "".join(answer.split()) == "[]" else None

        pairs, usage = await self._ask(prompt, parse, job)
        return MergeAnswer(pairs or [], usage)

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        prompt = build_html_table_merge_prompt(first, second)
        table, usage = await self._ask(prompt, parse_table_merge, job)
        return TableMergeAnswer(table, usage)

    async def _ask(
        self, prompt: str, parse: Callable[[str], T | None], job: PageJob
    ) -> tuple[T | None, Usage]:
        usage = Usage()
        room = (
            self.settings.max_model_len
            - estimate_text_tokens(prompt)
            - _BLANK_IMAGE_TOKENS
            - estimate_text_tokens(CHAT_TEMPLATE_TEXT)
        )
        if room < MIN_ANSWER_TOKENS:
            logger.info("merge prompt does not fit the context (%d tokens left): no merge", room)
            return None, usage
        for attempt in range(self.settings.page_retries + 1):
            model = self.settings.ocrflux_model
            body = call_body(model, prompt, BLANK_IMAGE_URL, toolkit_temperature(attempt), room)
            try:
                data = await self.upstream.chat(body, job.request_id)
            except asyncio.CancelledError:
                raise
            except APIError as exc:
                logger.warning("merge call failed (%s): no merge", exc.message)
                return None, usage
            usage.add(data.get("usage"))
            choices = data.get("choices") or [{}]
            answer = (choices[0].get("message") or {}).get("content") or ""
            parsed = parse(answer if isinstance(answer, str) else "")
            if parsed is not None:
                return parsed, usage
        logger.info("merge answer unreadable after %d attempts: no merge", attempt + 1)
        return None, usage
