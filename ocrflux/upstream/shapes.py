"""What a chat completion from the upstream must look like before anything reads it."""

from __future__ import annotations

from typing import Any

from ocrflux.upstream.errors import bad_response

_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def check_completion(data: Any) -> dict[str, Any]:
    """`data` if it has OpenAI's chat-completion shape where the gateway reads it, else 502.

    Checked: `choices` is a list of objects, each `message` an object whose `content` is a
    string or null, `finish_reason` a string or null, and `usage` (if any) an object of
    non-negative integer token counts. Fields nobody reads are left alone.
    """
    if not isinstance(data, dict):
        raise _unexpected("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise _unexpected("`choices` is not a list")
    for n, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise _unexpected(f"`choices[{n}]` is not an object")
        message = choice.get("message")
        if message is not None:
            if not isinstance(message, dict):
                raise _unexpected(f"`choices[{n}].message` is not an object")
            content = message.get("content")
            if content is not None and not isinstance(content, str):
                raise _unexpected(f"`choices[{n}].message.content` is not a string")
        reason = choice.get("finish_reason")
        if reason is not None and not isinstance(reason, str):
            raise _unexpected(f"`choices[{n}].finish_reason` is not a string")
    usage = data.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise _unexpected("`usage` is not an object")
        for name in _TOKEN_FIELDS:
            value = usage.get(name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise _unexpected(f"`usage.{name}` is not a token count")
    return data


def _unexpected(what: str) -> Exception:
    return bad_response(f"the model server returned an unexpected body: {what}")
