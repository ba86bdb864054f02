"""The gateway's image token estimate against what the real vLLM charges.

vLLM's cost of an image = prompt_tokens(image + text) - prompt_tokens(text alone), which is
the `<|image_pad|>` tokens plus the `<|vision_start|>`/`<|vision_end|>` pair. The estimate
must match it exactly: both sides run Qwen2-VL's `smart_resize` with OCRFlux-3B's
preprocessor settings, so any difference is a bug (or a changed processor), not noise.
"""

from __future__ import annotations

import openai
import pytest

from ocrflux.intake.tokens import IMAGE_WRAPPER_TOKENS, image_tokens
from tests.real_vllm.helpers import png_data_url
from tests.real_vllm.vllm_server import DEFAULT_MODEL_NAME

pytestmark = pytest.mark.real_vllm

PROMPT = "Read this page."
# (width, height): tiny (min_pixels path), rounding edges, portrait/landscape pairs, document
# pages, extreme aspect ratios, and one page big enough to need most of an 8k context.
SIZES = [
    (28, 28),
    (13, 13),
    (10, 300),
    (255, 257),
    (256, 256),
    (640, 480),
    (480, 640),
    (827, 1169),  # A4 at 100 dpi
    (1024, 1024),
    (1000, 1414),
    (300, 3000),
    (3000, 300),
    (1700, 2200),  # US letter at 200 dpi: 4819 tokens
]


def _prompt_tokens(client: openai.OpenAI, content: list[dict[str, object]]) -> int:
    reply = client.chat.completions.create(
        model=DEFAULT_MODEL_NAME,
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
        max_tokens=1,
    )
    assert reply.usage is not None
    return reply.usage.prompt_tokens


def test_image_token_estimate_matches_vllm(
    direct: openai.OpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    text_part = {"type": "text", "text": PROMPT}
    text_only = _prompt_tokens(direct, [text_part])
    rows = []
    for width, height in SIZES:
        image_part = {"type": "image_url", "image_url": {"url": png_data_url(width, height)}}
        real = _prompt_tokens(direct, [image_part, text_part]) - text_only
        estimate = image_tokens(width, height) + IMAGE_WRAPPER_TOKENS
        rows.append((width, height, estimate, real))

    table = ["| image (w x h) | estimate | vLLM | diff |", "|---|---:|---:|---:|"]
    table += [f"| {w} x {h} | {e} | {r} | {e - r:+d} |" for w, h, e, r in rows]
    with capsys.disabled():
        print("\nimage tokens incl. the 2 vision wrapper tokens:\n" + "\n".join(table))
    mismatches = [row for row in rows if row[2] != row[3]]
    assert not mismatches, "estimate differs from vLLM:\n" + "\n".join(table)
