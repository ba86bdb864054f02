"""Documents through the clients people already use: mistralai's OCR, openai's chat `file` part."""

from __future__ import annotations

import base64

import openai
import pytest
from mistralai.client import Mistral

from tests.documents.pdfs import SCENARIOS
from tests.documents.test_ocr_e2e import feed
from tests.support import FakeVLLMProcess, Process


def test_mistralai_sdk_ocr_process(ocrflux_gateway: Process, fake: FakeVLLMProcess) -> None:
    scenario = SCENARIOS["table_two_pages"]
    feed(fake, scenario)
    client = Mistral(api_key="any-key", server_url=ocrflux_gateway.url)
    pdf = base64.b64encode(scenario.pdf()).decode()
    response = client.ocr.process(
        model="mistral-ocr-latest",
        document={"type": "document_url", "document_url": f"data:application/pdf;base64,{pdf}"},
        include_image_base64=True,
    )
    assert response.model == "mistral-ocr-latest"
    assert [page.index for page in response.pages] == [0, 1]
    assert [page.markdown for page in response.pages] == list(scenario.pages)
    assert response.pages[0].dimensions is not None
    assert response.pages[0].dimensions.height == 1024
    assert response.usage_info.pages_processed == 2
    assert response.usage_info.doc_size_bytes == len(scenario.pdf())
    # (The toolkit's extra fields are not in the SDK's model; test_ocr_e2e reads them.)


def test_mistralai_sdk_gets_a_clear_error_for_annotations(ocrflux_gateway: Process) -> None:
    client = Mistral(api_key="any-key", server_url=ocrflux_gateway.url)
    with pytest.raises(Exception, match="document_annotation_format"):
        client.ocr.process(
            model="mistral-ocr-latest",
            document={"type": "document_url", "document_url": "data:application/pdf;base64,AA=="},
            document_annotation_format={"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"type": "object"}}},
        )  # fmt: skip


@pytest.mark.parametrize("output_format", ["markdown", "list"])
def test_openai_sdk_chat_with_a_pdf_file_part(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, output_format: str
) -> None:
    scenario = SCENARIOS["hyphen"]
    feed(fake, scenario)
    client = openai.OpenAI(base_url=ocrflux_gateway.url + "/v1", api_key="x", max_retries=0)
    pdf = base64.b64encode(scenario.pdf()).decode()
    reply = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Convert this report"},
                    {
                        "type": "file",
                        "file": {
                            "file_data": f"data:application/pdf;base64,{pdf}",
                            "filename": "report.pdf",
                        },
                    },
                ],
            }
        ],
        extra_body={"output_format": output_format},
    )
    content = reply.choices[0].message.content
    if output_format == "markdown":
        assert content == scenario.document_text
    else:
        assert content == (
            "- Findings\n  - The results of the experi-ment were clear.\n  - A new paragraph."
        )
    assert reply.model == "gpt-4o"
    assert reply.usage is not None
    assert reply.usage.total_tokens == sum(c["usage"]["total_tokens"] for c in fake.requests())


def test_openai_sdk_streams_a_merged_pdf_in_one_piece(
    ocrflux_gateway: Process, fake: FakeVLLMProcess
) -> None:
    scenario = SCENARIOS["cjk"]
    feed(fake, scenario)
    client = openai.OpenAI(base_url=ocrflux_gateway.url + "/v1", api_key="x", max_retries=0)
    pdf = base64.b64encode(scenario.pdf()).decode()
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": [{"type": "file", "file": {
            "file_data": f"data:application/pdf;base64,{pdf}"}}]}],
        stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == scenario.document_text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
