"""How the vLLM engine asks OCRFlux-3B anything: the toolkit's message layout and sampling.

Every call the toolkit makes (`pipeline.py` `build_page_to_markdown_query`,
`build_element_merge_detect_query`, `build_html_table_merge_query`) is one user message with
the prompt text first and one image second, greedy first and 0.1 hotter per re-ask.
"""

from __future__ import annotations

from typing import Any

import orjson

# The toolkit's schedule (pipeline.py TEMPERATURE_BY_ATTEMPT): 0.0, 0.1, ... at most 0.8.
TEMPERATURE_STEP = 0.1
MAX_TEMPERATURE = 0.8
# The toolkit samples with vLLM's SamplingParams defaults. vLLM's server instead defaults to the
# model's generation_config (Qwen2.5-VL's: top_k 1, top_p 0.001, repetition_penalty 1.05), under
# which a higher temperature changes nothing; so every call states the toolkit's values.
TOOLKIT_SAMPLING = {"top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0}
# What Qwen2-VL's chat template wraps around one user message (its default system prompt,
# role headers, special tokens): part of every call's prompt, counted high like all text.
CHAT_TEMPLATE_TEXT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
)


def toolkit_temperature(attempt: int) -> float:
    """The temperature of attempt 0, 1, 2, ... (0.0, 0.1, 0.2, ..., at most 0.8)."""
    return min(round(TEMPERATURE_STEP * attempt, 3), MAX_TEMPERATURE)


def call_body(
    model: str, text: str, image_data_url: str, temperature: float, max_tokens: int | None
) -> bytes:
    """One call as the toolkit makes it: a user message with the text first, then the image
    (the page, or the merge prompts' blank image); the toolkit's sampling. `max_tokens` None
    leaves vLLM's default: all the room the prompt leaves."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": image_data_url}},
                ],
            }
        ],
        "temperature": temperature,
        **TOOLKIT_SAMPLING,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return orjson.dumps(body)
