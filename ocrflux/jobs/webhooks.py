"""A batch's end as OpenAI's webhook event, signed the Standard Webhooks way.

OpenAI's batch events (`batch.completed`, `batch.failed`, `batch.expired`, `batch.cancelled`)
carry the batch id only; the receiver fetches the batch for the rest. The signature is the
Standard Webhooks one (the `standardwebhooks` library): `webhook-id` (the event id, the same on
every retry), `webhook-timestamp` (this attempt's time: receivers refuse one older than five
minutes) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed
with the base64 part of the `whsec_...` secret), which is what `client.webhooks.unwrap()` of
the official openai SDK checks.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import orjson
from standardwebhooks.webhooks import Webhook

from ocrflux.jobs.records import Status, WebhookEvent

EVENT_TYPES = {
    Status.COMPLETED: "batch.completed",
    Status.FAILED: "batch.failed",
    Status.EXPIRED: "batch.expired",
    Status.CANCELLED: "batch.cancelled",
}


def batch_event(batch_id: str, outcome: Status, now: int) -> WebhookEvent:
    """The event that says batch `batch_id` ended as `outcome` at `now` (Unix seconds)."""
    event_id = f"evt_{secrets.token_hex(16)}"
    kind = EVENT_TYPES[outcome]
    payload = {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created_at": now,
        "data": {"id": batch_id},
    }
    return WebhookEvent(event_id, batch_id, kind, orjson.dumps(payload), now)


class WebhookSigner:
    """Signs event bodies with WEBHOOK_SECRET (`whsec_` + base64)."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, event_id: str, body: bytes, now: int) -> dict[str, str]:
        """The three Standard Webhooks headers for sending `body` at `now`."""
        stamp = datetime.fromtimestamp(now, tz=UTC)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(now),
            "webhook-signature": self._webhook.sign(event_id, stamp, body),
        }
