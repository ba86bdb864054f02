"""The vLLM engine's page protocol with a scripted upstream: body, schedule, budget, failures."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from PIL import Image

from ocrflux.engines.base import PageJob
from ocrflux.engines.vllm import VLLMEngine, is_request_error, page_error
from ocrflux.engines.vllm_calls import toolkit_temperature
from ocrflux.errors import APIError
from ocrflux.format.page import build_page_prompt
from ocrflux.intake.images import PreparedImage
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.settings import Settings

PAGE_JSON = (
    '{"primary_language": "en", "is_rotation_valid": true, "rotation_correction": 0, '
    '"is_table": false, "is_diagram": false, "natural_text": "Text."}'
)


def answer(content: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    return {"choices": [{"message": {"content": content}, "finish_reason": "stop"}], "usage": usage}


class ScriptedUpstream:
    """Answers page calls from a script (a dict is an answer, an APIError is raised)."""

    def __init__(self, *script: dict[str, Any] | APIError) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        self.flows: list[str | None] = []

    async def chat(
        self, body: bytes, request_id: str, *, flow: str | None = None
    ) -> dict[str, Any]:
        self.bodies.append(orjson.loads(body))
        self.flows.append(flow)
        step = self.script.pop(0)
        if isinstance(step, APIError):
            raise step
        return step


def page(width: int = 768, height: int = 1024) -> PreparedImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return PreparedImage(url, width, height, "image/png", False)


def shrunk_size(body: dict[str, Any]) -> tuple[int, int]:
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
        assert max(image.size) < 1024
        return image.size


@pytest.fixture
async def preparer() -> AsyncIterator[ImagePreparer]:
    images = ImagePreparer(Settings())
    yield images
    await images.aclose()


def engine(upstream: ScriptedUpstream, images: ImagePreparer, **settings: Any) -> VLLMEngine:
    return VLLMEngine(Settings(**settings), upstream, images)  # type: ignore[arg-type]


def test_the_temperature_schedule_is_the_toolkits() -> None:
    # chatdoc-com/OCRFlux@71954ad pipeline.py TEMPERATURE_BY_ATTEMPT, held at its last value.
    assert [toolkit_temperature(a) for a in range(10)] == [
        0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.8,
    ]  # fmt: skip


def test_a_call_is_text_first_with_the_toolkits_sampling(preparer: ImagePreparer) -> None:
    vllm = engine(ScriptedUpstream(), preparer)
    body = orjson.loads(vllm._body("Merge these.", "data:image/png;base64,AA==", 0.2, None))
    assert body == {
        "model": "ChatDOC/OCRFlux-3B",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Merge these."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                ],
            }
        ],
        "temperature": 0.2,
        "top_p": 1.0,
        "top_k": -1,
        "repetition_penalty": 1.0,
    }  # no max_tokens: vLLM's default is all the room the prompt leaves


async def test_the_budget_is_the_room_left_capped_by_the_client_and_the_setting(
    preparer: ImagePreparer,
) -> None:
    room = 8192 - engine(ScriptedUpstream(), preparer).prompt_tokens(768, 1024)
    cases = [({}, None, room), ({}, 500, 500), ({"page_max_tokens": 300}, 500, 300)]
    for settings, client, expected in cases:
        upstream = ScriptedUpstream(answer(PAGE_JSON))
        result = await engine(upstream, preparer, **settings).read_page(
            page(), PageJob("r", max_tokens=client)
        )
        assert result.page is not None
        assert upstream.bodies[0]["max_tokens"] == expected
        assert upstream.bodies[0]["messages"][0]["content"][0]["text"] == build_page_prompt()


async def test_a_client_budget_the_context_cannot_hold_is_a_400_before_any_call(
    preparer: ImagePreparer,
) -> None:
    upstream = ScriptedUpstream()
    with pytest.raises(APIError) as caught:
        await engine(upstream, preparer).read_page(page(), PageJob("r", max_tokens=7000))
    assert (caught.value.status, caught.value.param) == (400, "max_tokens")
    assert upstream.bodies == []


async def test_a_context_too_small_for_the_page_shrinks_it_rather_than_starve_the_answer(
    preparer: ImagePreparer,
) -> None:
    small = Settings(max_model_len=2048)
    upstream = ScriptedUpstream(answer(PAGE_JSON))
    images = ImagePreparer(small)
    try:
        vllm = VLLMEngine(small, upstream, images)  # type: ignore[arg-type]
        assert 2048 - vllm.prompt_tokens(768, 1024) < 1024
        result = await vllm.read_page(page(), PageJob("r"))
    finally:
        await images.aclose()
    assert result.page is not None
    (body,) = upstream.bodies
    assert body["max_tokens"] >= 1024
    assert body["max_tokens"] == 2048 - vllm.prompt_tokens(*shrunk_size(body))


async def test_failed_calls_are_asked_again_then_the_page_is_a_fallback_with_its_error(
    preparer: ImagePreparer,
) -> None:
    failure = APIError(502, "the model server failed (HTTP 500): boom", code="upstream_error")
    upstream = ScriptedUpstream(failure, failure, failure, failure)
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert result.page is None and result.error is failure and result.raw_text == ""
    assert [b["temperature"] for b in upstream.bodies] == [0.0, 0.1, 0.2, 0.3]

    upstream = ScriptedUpstream(failure, answer(PAGE_JSON))
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert result.page is not None and result.error is None


async def test_every_call_of_a_page_is_admitted_under_its_jobs_flow(
    preparer: ImagePreparer,
) -> None:
    upstream = ScriptedUpstream(answer("not json"), answer(PAGE_JSON))
    await engine(upstream, preparer).read_page(page(), PageJob("r", flow="document-7"))
    assert upstream.flows == ["document-7", "document-7"]
    upstream = ScriptedUpstream(answer(PAGE_JSON))
    await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert upstream.flows == ["r"]  # by default, the request is the flow


async def test_an_earlier_answer_stays_the_pages_text_when_a_later_call_fails(
    preparer: ImagePreparer,
) -> None:
    failure = APIError(502, "boom", code="upstream_error")
    upstream = ScriptedUpstream(answer("not json"), failure, failure, failure)
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert (result.page, result.raw_text, result.error) == (None, "not json", None)


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_calls_the_upstream_layer_already_retried_are_not_asked_again(
    preparer: ImagePreparer, status: int
) -> None:
    upstream = ScriptedUpstream(APIError(status, "busy"))
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert result.error is not None and result.error.status == status
    assert len(upstream.bodies) == 1


async def test_vllm_refusing_the_clients_budget_fails_the_request(
    preparer: ImagePreparer,
) -> None:
    refusal = APIError(
        400,
        "max_tokens=5000 cannot be greater than max_model_len=4096.",
        param="max_tokens",
    )
    with pytest.raises(APIError) as caught:
        await engine(ScriptedUpstream(refusal), preparer).read_page(
            page(), PageJob("r", max_tokens=5000)
        )
    assert caught.value is refusal


async def test_a_refused_budget_of_our_own_leaves_the_budget_to_vllm(
    preparer: ImagePreparer,
) -> None:
    refusal = APIError(400, "Input length (8100) exceeds model's maximum context length (8192).")
    upstream = ScriptedUpstream(refusal, answer(PAGE_JSON))
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert result.page is not None
    first, second = upstream.bodies
    assert "max_tokens" in first and "max_tokens" not in second  # vLLM's default: the room left
    assert first["temperature"] == second["temperature"] == 0.0  # not a re-ask of the page
    # Refused again without a budget of ours: the page fails at once, as a 502.
    upstream = ScriptedUpstream(refusal, refusal)
    result = await engine(upstream, preparer).read_page(page(), PageJob("r"))
    assert result.error is not None and result.error.status == 502
    assert len(upstream.bodies) == 2


def test_request_errors_and_page_errors() -> None:
    assert is_request_error(
        APIError(400, "Input length (5096) exceeds model's maximum context length (4096).")
    )
    assert is_request_error(APIError(400, "too large", param="max_completion_tokens"))
    assert not is_request_error(APIError(400, "Failed to load image"))
    assert not is_request_error(APIError(502, "max_tokens"))
    refused = page_error(APIError(404, "The model `x` does not exist.", param="model"))
    assert (refused.status, refused.code) == (502, "upstream_error")
    assert "HTTP 404" in refused.message
    unavailable = APIError(503, "unreachable", code="upstream_unavailable")
    assert page_error(unavailable) is unavailable
