"""A batch's end as OpenAI's webhook event, signed so the official SDK's `unwrap` accepts it."""

from __future__ import annotations

import base64
import time

import openai
import orjson
import pytest

from ocrflux.jobs.records import Status
from ocrflux.jobs.webhooks import EVENT_TYPES, WebhookSigner, batch_event

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
