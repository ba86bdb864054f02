"""A fake vLLM OpenAI server for tests and benchmarks: a real process on a loopback socket.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, chunked SSE) to answer
like vLLM: `/health`, `/v1/models`, `/v1/chat/completions` (plain and streaming, with usage),
and vLLM's error bodies. Written on raw asyncio streams so that it can also misbehave the
ways a real server does: drop connections, stall, send garbage, break a stream midway.

Control it over HTTP (tests only):
  POST /_control  {"fail": [503, 429], "retry_after": "0", "drop": 1, "garbage": 1,
                   "delay": 0.2, "stream_drop_after": 3, "health_status": 503,
                   "page_answers": {"768x1024": ["not json", "{...}"], "#ff0000": ["{...}"]},
                   "page_failures": {"768x1024": [500]}, "page_delays": {"768x1024": 0.5},
                   "prompt_answers": [{"contains": ["Previous page:"], "answers": ["[]"],
                                       "delay": 0.3}],
                   "answer": "text",
                   "stream_chunks": 8, "chunk_delay": 0.01}
  GET  /_requests  what it received (image URLs replaced by their decoded size), with
                   `received_at` and `answered_at` times
  GET  /_events    stream events such as client disconnects
  GET  /_stats     counters since start (kept by /_reset): chat requests served, health and
                   model checks, answers in service now and at most
  POST /_reset     forget requests and behaviours
Load controls: "capacity": N answers in service at once (like a GPU's batch; the rest wait),
"delay_jitter": 0.5 (service time varies +-50%), "fail_rate": 0.01 (that share of chat requests
answers 503), "health_delay": 1.0 (seconds before /health answers), "models_body": raw JSON for
/v1/models.
Run: python tests/fake_vllm.py --port 8001 [--served-model-name NAME] [--service-time S]
     [--capacity N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import random
import time
import uuid
from typing import Any

import orjson

PAGE_PROMPT_START = "Below is the image of one page of a document"


class Behaviour:
    def __init__(self, service_time: float, capacity: int = 0) -> None:
        self.service_time = service_time
        self.default_capacity = capacity
        self.served = 0
        self.health_checks = 0
        self.models_checks = 0
        self.in_service = 0
        self.max_in_service = 0
        self.reset()

    def reset(self) -> None:
        # Requests that arrived before a reset must not consume the next test's behaviours.
        self.generation = getattr(self, "generation", 0) + 1
        self.fail: list[int] = []
        self.retry_after: str | None = None
        self.drop = 0
        self.garbage = 0
        self.delay = self.service_time
        self.stream_drop_after: int | None = None
        self.health_status = 200
        self.page_answers: dict[str, list[str]] = {}
        self.page_failures: dict[str, list[int]] = {}
        # Extra seconds for a request whose first image has this size (pages finish out of order).
        self.page_delays: dict[str, float] = {}
        # Answers to other prompts (the cross-page merge ones): the first rule whose
        # `contains` strings all occur in the prompt text answers (`answers` pop in order),
        # after its optional `delay` seconds (calls sent together then finish out of order).
        self.prompt_answers: list[dict[str, Any]] = []
        self.answer = "Hello from the fake vLLM."
        self.stream_chunks = 8
        self.chunk_delay = 0.0
        self.record = True
        self.requests: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.capacity = self.default_capacity
        self.delay_jitter = 0.0
        self.fail_rate = 0.0
        self.health_delay = 0.0
        self.models_body: str | None = None
        self._slots: asyncio.Semaphore | None = None
        self._slots_for = 0

    def slots(self) -> asyncio.Semaphore | None:
        """The capacity semaphore (made anew when `capacity` changed); None: unbounded."""
        if self.capacity <= 0:
            return None
        if self._slots is None or self._slots_for != self.capacity:
            self._slots, self._slots_for = asyncio.Semaphore(self.capacity), self.capacity
        return self._slots

    def stats(self) -> dict[str, int]:
        return {
            "served": self.served,
            "health_checks": self.health_checks,
            "models_checks": self.models_checks,
            "in_service": self.in_service,
            "max_in_service": self.max_in_service,
        }

    async def serve(self, extra: float = 0.0) -> None:
        """Hold one unit of capacity for the service time plus `extra` (waiting for one if all
        are busy)."""
        delay = self.delay + extra
        if delay and self.delay_jitter:
            delay *= random.uniform(1 - self.delay_jitter, 1 + self.delay_jitter)
        slots = self.slots()
        if slots is None:
            if delay:
                await asyncio.sleep(delay)
            return
        async with slots:
            self.in_service += 1
            self.max_in_service = max(self.max_in_service, self.in_service)
            try:
                if delay:
                    await asyncio.sleep(delay)
            finally:
                self.in_service -= 1

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if not hasattr(self, key) or key in ("requests", "events") or key.startswith("_"):
                raise ValueError(f"unknown control {key}")
            setattr(self, key, value)


def image_size(url: str) -> dict[str, Any]:
    """What the fake learns from an image URL: kind, byte size, pixel size, corner colour.

    The corner colour (pixel (4, 4) as `#rrggbb`) lets tests tell pages of equal size apart:
    their generated pages carry a coloured square in the top-left corner.
    """
    if not url.startswith("data:"):
        return {"kind": "remote", "url": url[:100]}
    from PIL import Image  # only tests that send images pay for Pillow

    header, _, payload = url.partition(",")
    data = base64.b64decode(payload)
    with Image.open(io.BytesIO(data)) as image:
        w, h = image.width, image.height
        try:
            rgb = image.convert("RGB")
            # RGB of the top-left, top-right, bottom-left and bottom-right pixels (rotations)
            corners = [
                list(rgb.getpixel(xy)) for xy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))
            ]
            corner = "#{:02x}{:02x}{:02x}".format(*rgb.getpixel((min(4, w - 1), min(4, h - 1))))
        except OSError:  # corrupt pixels behind a valid header: answered like any page
            corners, corner = None, None
        return {
            "kind": "data",
            "header": header,  # e.g. "data:image/png;base64", as vLLM reads it
            "mime": header[5:].split(";")[0],
            "bytes": len(data),
            "width": w,
            "height": h,
            "format": image.format,
            "corners": corners,
            # Pixel (4, 4) as #rrggbb: generated pages carry a coloured corner square, which
            # tells pages of equal size apart (page_answers may be keyed by it).
            "corner": corner,
        }


def summarize(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A copy of the request with image URLs replaced by their sizes, and those sizes."""
    images: list[dict[str, Any]] = []
    messages = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    info = image_size(part["image_url"]["url"])
                    images.append(info)
                    parts.append({"type": "image_url", "image": info})
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        messages.append(message)
    return {**body, "messages": messages}, images


def prompt_text(body: dict[str, Any]) -> str:
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if p.get("type") == "text"]
    return "\n".join(texts)


def page_key(body: dict[str, Any], images: list[dict[str, Any]]) -> str | None:
    """ "WxH" of a page call's image (what page_answers and page_failures are keyed by)."""
    if images and prompt_text(body).startswith(PAGE_PROMPT_START):
        return f"{images[0].get('width')}x{images[0].get('height')}"
    return None


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": status}}
    )


class FakeVLLM:
    def __init__(self, served_model: str, service_time: float, capacity: int = 0) -> None:
        self.model = served_model
        self.b = Behaviour(service_time, capacity)

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                keep_open = await self.route(method, path, headers, body, writer)
                if not keep_open:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def respond(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> bool:
        head = [
            f"HTTP/1.1 {status} X",
            f"content-type: {content_type}",
            f"content-length: {len(body)}",
        ]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True

    async def route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        b = self.b
        if path == "/health":
            b.health_checks += 1
            if b.health_delay:
                await asyncio.sleep(b.health_delay)
            return await self.respond(writer, b.health_status, b"")
        if path == "/_stats":
            return await self.respond(writer, 200, orjson.dumps(b.stats()))
        if path == "/v1/models" and b.models_body is not None:
            b.models_checks += 1
            return await self.respond(writer, 200, b.models_body.encode())
        if path == "/v1/models":
            b.models_checks += 1
            models = {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "vllm"}],
            }
            return await self.respond(writer, 200, orjson.dumps(models))
        if path == "/_control":
            try:
                b.update(orjson.loads(body))
            except ValueError as exc:
                return await self.respond(writer, 400, error_body(400, str(exc)))
            return await self.respond(writer, 200, b"{}")
        if path == "/_requests":
            return await self.respond(writer, 200, orjson.dumps(b.requests))
        if path == "/_events":
            return await self.respond(writer, 200, orjson.dumps(b.events))
        if path == "/_reset":
            b.reset()
            return await self.respond(writer, 200, b"{}")
        if path == "/v1/chat/completions" and method == "POST":
            return await self.chat(headers, body, writer)
        return await self.respond(writer, 404, error_body(404, f"no route {path}"))

    async def chat(self, headers: dict[str, str], raw: bytes, writer: asyncio.StreamWriter) -> bool:
        b = self.b
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return await self.respond(writer, 400, error_body(400, "invalid JSON"))
        summary, images = summarize(body) if b.record else (body, [])
        record: dict[str, Any] = {
            "headers": headers,
            "body": summary,
            "images": images,
            "received_at": time.time(),
        }
        if b.record:
            b.requests.append(record)
        generation = b.generation
        extra = 0.0
        if images:
            extra = b.page_delays.get(f"{images[0].get('width')}x{images[0].get('height')}", 0)
        rule = self.prompt_rule(body)
        if rule is not None:
            extra += float(rule.get("delay", 0))
        await b.serve(extra)
        record["answered_at"] = time.time()
        b.served += 1
        if generation != b.generation:  # reset while this request slept: a plain answer
            b = Behaviour(0.0)
        if b.fail_rate and random.random() < b.fail_rate:
            return await self.respond(writer, 503, error_body(503, "fake random 503"))
        if b.drop:
            b.drop -= 1
            return False  # close the socket without a response
        if b.fail:
            status = b.fail.pop(0)
            extra = {"retry-after": b.retry_after} if b.retry_after is not None else None
            return await self.respond(
                writer, status, error_body(status, f"fake failure {status}"), extra=extra
            )
        failures = b.page_failures.get(page_key(body, images) or "")
        if failures:
            status = failures.pop(0)
            return await self.respond(writer, status, error_body(status, f"fake failure {status}"))
        if b.garbage:
            b.garbage -= 1
            return await self.respond(writer, 200, b"<html>not json</html>")
        if body.get("model") != self.model:
            message = f"The model `{body.get('model')}` does not exist."
            return await self.respond(writer, 404, error_body(404, message, "model"))
        if any(i.get("kind") == "remote" for i in images):
            return await self.respond(writer, 400, error_body(400, "fake refuses remote URLs"))

        answer = self.answer_for(body, images)
        prompt_tokens = (
            len(prompt_text(body)) // 4
            + 1
            + sum((i.get("width", 0) // 28) * (i.get("height", 0) // 28) for i in images)
        )
        completion_tokens = max(1, len(answer) // 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        record["usage"] = usage
        if body.get("stream"):
            return await self.stream(body, answer, usage, writer)
        data = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                    "stop_reason": None,
                }
            ],
            "usage": usage,
        }
        return await self.respond(writer, 200, orjson.dumps(data))

    def prompt_rule(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first `prompt_answers` rule whose `contains` all occur in the call's text."""
        text = prompt_text(body)
        for rule in self.b.prompt_answers:
            if all(part in text for part in rule.get("contains", [])):
                return rule
        return None

    def answer_for(self, body: dict[str, Any], images: list[dict[str, Any]]) -> str:
        key = page_key(body, images)
        if key is not None:
            for name in (key, images[0].get("corner")):
                answers = self.b.page_answers.get(str(name))
                if answers:
                    return answers.pop(0) if len(answers) > 1 else answers[0]
        rule = self.prompt_rule(body)
        if rule is not None:
            answers = rule["answers"]
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return self.b.answer

    async def stream(
        self,
        body: dict[str, Any],
        answer: str,
        usage: dict[str, int],
        writer: asyncio.StreamWriter,
    ) -> bool:
        b = self.b
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(
            delta: dict[str, Any], finish: str | None = None, with_usage: bool = False
        ) -> bytes:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
            }
            data["choices"] = (
                []
                if with_usage
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            )
            if with_usage:
                data["usage"] = usage
            payload = b"data: " + orjson.dumps(data) + b"\n\n"
            return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"

        n = max(1, b.stream_chunks)
        step = max(1, -(-len(answer) // n))
        pieces = [answer[i : i + step] for i in range(0, len(answer), step)] or [""]
        try:
            writer.write(chunk({"role": "assistant", "content": ""}))
            await writer.drain()
            for index, piece in enumerate(pieces):
                if b.stream_drop_after is not None and index >= b.stream_drop_after:
                    b.stream_drop_after = None
                    return False
                if b.chunk_delay:
                    await asyncio.sleep(b.chunk_delay)
                writer.write(chunk({"content": piece}))
                await writer.drain()
            writer.write(chunk({}, finish="stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                writer.write(chunk({}, with_usage=True))
            done = b"data: [DONE]\n\n"
            writer.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            b.events.append({"event": "client_disconnected", "at": time.time()})
            return False
        return True


async def serve(
    host: str, port: int, served_model: str, service_time: float, capacity: int = 0
) -> None:
    fake = FakeVLLM(served_model, service_time, capacity)
    server = await asyncio.start_server(
        fake.handle_connection, host, port, limit=2**26, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="ChatDOC/OCRFlux-3B")
    parser.add_argument("--service-time", type=float, default=0.0)
    parser.add_argument(
        "--capacity", type=int, default=0, help="answers in service at once (0: unbounded)"
    )
    args = parser.parse_args()
    coroutine = serve(
        args.host, args.port, args.served_model_name, args.service_time, args.capacity
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


if __name__ == "__main__":
    main()
