"""A batch's end as OpenAI's webhook event, signed so the official SDK's `unwrap` accepts it."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from ocrflux.jobs.delivery import Attempt, WebhookSender
from ocrflux.jobs.records import Delivery, Status
from ocrflux.jobs.webhooks import EVENT_TYPES, WebhookSigner, batch_event
from ocrflux.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"a receiver's thirty-two byte key").decode()


def sdk() -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (Status.COMPLETED, "BatchCompletedWebhookEvent"),
        (Status.FAILED, "BatchFailedWebhookEvent"),
        (Status.EXPIRED, "BatchExpiredWebhookEvent"),
        (Status.CANCELLED, "BatchCancelledWebhookEvent"),
    ],
)
def test_the_openai_sdk_unwraps_each_batch_event(outcome: Status, kind: str) -> None:
    now = int(time.time())
    event = batch_event("batch_0192abc", outcome, now)
    headers = WebhookSigner(SECRET).headers(event.id, event.payload, now)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == event.id and event.id.startswith("evt_")
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")

    unwrapped = sdk().webhooks.unwrap(event.payload, headers, secret=SECRET)
    assert type(unwrapped).__name__ == kind
    assert unwrapped.type == f"batch.{outcome.value}" == EVENT_TYPES[outcome]
    assert unwrapped.id == event.id and unwrapped.object == "event"
    assert unwrapped.created_at == now and unwrapped.data.id == "batch_0192abc"
    assert orjson.loads(event.payload) == {
        "id": event.id,
        "object": "event",
        "type": f"batch.{outcome.value}",
        "created_at": now,
        "data": {"id": "batch_0192abc"},
    }


def test_another_secret_or_a_changed_body_does_not_verify() -> None:
    now = int(time.time())
    event = batch_event("batch_1", Status.COMPLETED, now)
    headers = WebhookSigner(SECRET).headers(event.id, event.payload, now)
    other = "whsec_" + base64.b64encode(b"another key entirely, 32 bytes!!").decode()
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk().webhooks.unwrap(event.payload, headers, secret=other)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk().webhooks.unwrap(event.payload.replace(b"batch_1", b"batch_2"), headers, secret=SECRET)


def test_a_retry_is_signed_again_at_its_own_time_with_the_same_id() -> None:
    """The SDK refuses a timestamp older than five minutes: a retry an hour later carries a
    fresh one (and the same webhook-id, so the receiver can tell it is the same event)."""
    first = int(time.time()) - 3600
    event = batch_event("batch_1", Status.COMPLETED, first)
    signer = WebhookSigner(SECRET)
    stale = signer.headers(event.id, event.payload, first)
    with pytest.raises(openai.InvalidWebhookSignatureError, match="too old"):
        sdk().webhooks.unwrap(event.payload, stale, secret=SECRET)
    retry = signer.headers(event.id, event.payload, int(time.time()))
    assert retry["webhook-id"] == stale["webhook-id"]
    assert sdk().webhooks.unwrap(event.payload, retry, secret=SECRET).data.id == "batch_1"


# --- the receiver's address and the SSRF guard ----------------------------------------------


def sender(url: str, allowed: str = "", addresses: list[str] | None = None) -> tuple[Any, list]:
    """A WebhookSender to `url` whose resolver answers `addresses`; the requests it sent."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async def resolve(host: str) -> list[str]:
        return list(addresses or [])

    settings = Settings(webhook_url=url, webhook_secret=SECRET, webhook_allowed_hosts=allowed)
    made = WebhookSender(settings, resolver=resolve, transport=httpx.MockTransport(answer))
    return made, sent


def a_delivery() -> Delivery:
    event = batch_event("batch_1", Status.COMPLETED, int(time.time()))
    return Delivery(event.id, event.batch_id, event.type, event.payload, 1)


@pytest.mark.parametrize(
    ("url", "addresses", "refused"),
    [
        ("http://127.0.0.1:8080/hook", [], "address 127.0.0.1 is not allowed"),
        ("http://[::1]:8080/hook", [], "address ::1 is not allowed"),
        ("http://10.1.2.3/hook", [], "address 10.1.2.3 is not allowed"),
        ("https://metadata.internal/hook", ["169.254.169.254"], "address 169.254.169.254"),
        # every answer must pass: one private address among public ones is refused
        ("https://hooks.example.com/hook", ["93.184.215.14", "192.168.1.7"], "192.168.1.7"),
    ],
)
async def test_a_private_receiver_is_refused_without_a_connection(
    url: str, addresses: list[str], refused: str
) -> None:
    made, sent = sender(url, addresses=addresses)
    attempt = await made.send(a_delivery())
    await made.aclose()
    assert attempt.outcome == "failed" and refused in attempt.detail
    assert sent == []


async def test_a_public_receiver_is_reached_at_the_address_that_was_checked() -> None:
    made, sent = sender("https://hooks.example.com:8443/ocr?x=1", addresses=["93.184.215.14"])
    attempt = await made.send(a_delivery())
    await made.aclose()
    assert attempt == Attempt("delivered", "HTTP 204")
    (request,) = sent
    assert str(request.url) == "https://93.184.215.14:8443/ocr?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert sdk().webhooks.unwrap(request.content, dict(request.headers), secret=SECRET)


@pytest.mark.parametrize(
    ("url", "allowed", "addresses"),
    [
        ("http://receiver:8080/hook", "receiver", ["10.0.0.9"]),  # by name: compose services
        ("http://receiver:8080/hook", "10.0.0.0/8", ["10.0.0.9"]),  # by network
        ("http://127.0.0.1:8080/hook", "127.0.0.1", []),  # by address
        ("http://[::1]:8080/hook", "::1", []),
    ],
)
async def test_an_allowed_host_is_reached(url: str, allowed: str, addresses: list[str]) -> None:
    made, sent = sender(url, allowed=allowed, addresses=addresses)
    attempt = await made.send(a_delivery())
    await made.aclose()
    assert attempt.outcome == "delivered" and len(sent) == 1


async def test_a_host_that_does_not_resolve_is_tried_again() -> None:
    made, sent = sender("https://hooks.example.com/hook", addresses=[])
    attempt = await made.send(a_delivery())
    await made.aclose()
    assert attempt == Attempt("retry", "could not resolve host hooks.example.com")
    assert sent == []
