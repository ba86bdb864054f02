"""OpenAI chat-completion wire models (what we validate) and response helpers."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.responses import Response

OutputFormat = Literal["markdown", "list", "json"]


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class FileData(BaseModel):
    """OpenAI's `file` part payload; only inline `file_data` (a data: URL) can be read here."""

    model_config = ConfigDict(extra="allow")

    file_data: str | None = Field(None, min_length=1)
    file_id: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _inline(self) -> FileData:
        if self.file_data is None:
            if self.file_id is not None:
                raise ValueError(
                    "file_id is not supported (there is no Files API here): send the document "
                    "inline as file_data, a data: URL such as 'data:application/pdf;base64,...'"
                )
            raise ValueError("a file part needs 'file_data' (a data: URL)")
        return self


class ContentPart(BaseModel):
    """One `text`, `image_url` or `file` part (one model, so error locations stay plain paths)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "image_url", "file"]
    text: str | None = None
    image_url: ImageURL | None = None
    file: FileData | None = None

    @model_validator(mode="after")
    def _has_payload(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs a 'text' field")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("an image_url part needs an 'image_url' object with a 'url'")
        if self.type == "file" and self.file is None:
            raise ValueError("a file part needs a 'file' object with 'file_data'")
        return self


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_text_part(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if value is not None and not isinstance(value, list):
            raise ValueError("content must be a string or a list of content parts")
        return value

    @model_validator(mode="after")
    def _content_required(self) -> Message:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        return self

    def text(self) -> str:
        return "\n".join(p.text for p in self.content or () if p.text is not None)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's request we check; unknown fields are forwarded untouched."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    response_format: dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    output_format: OutputFormat | None = None
    skip_cross_page_merge: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_strings(cls, value: Any) -> Any:
        # Checked here rather than by the union: its error would name `stop.str` as the field.
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValueError("stop must be a string or a list of strings")

    @field_validator("response_format")
    @classmethod
    def _known_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("type must be one of 'text', 'json_object', 'json_schema'")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def image_parts(self) -> list[tuple[int, int, ImageURL]]:
        """(message index, part index, image) for every image, in order."""
        return [
            (i, j, part.image_url)
            for i, message in enumerate(self.messages)
            for j, part in enumerate(message.content or ())
            if part.image_url is not None
        ]

    def document_parts(self) -> list[tuple[int, int, ContentPart]]:
        """(message index, part index, part) for every image and file part, in order."""
        return [
            (i, j, part)
            for i, message in enumerate(self.messages)
            for j, part in enumerate(message.content or ())
            if part.type in ("image_url", "file")
        ]

    def system_prompt(self) -> str | None:
        texts = [m.text() for m in self.messages if m.role in ("system", "developer")]
        return "\n".join(texts) if texts else None


def image_param(message_index: int, part_index: int) -> str:
    return f"messages[{message_index}].content[{part_index}].image_url.url"


def file_param(message_index: int, part_index: int) -> str:
    return f"messages[{message_index}].content[{part_index}].file.file_data"


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class Usage(BaseModel):
    """Token counts, summed over every upstream call a request caused."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)
            self.total_tokens += int(usage.get("total_tokens") or 0)


def completion_body(
    completion_id: str, model: str, content: str, usage: Usage, finish_reason: str
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage.model_dump(),
    }


def chunk_body(
    completion_id: str,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage:
        body["usage"] = usage.model_dump()
    return body


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON body serialised by orjson (every JSON answer of the gateway goes through here)."""
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )
