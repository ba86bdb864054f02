"""What the jobs store holds, as plain data: files, batches, lines and their results.

No SQL and no wire format here: the store (`ocrflux.jobs.store`) reads and writes these, the
routes shape them into OpenAI's and Mistral's objects (`ocrflux.jobs.wire`).
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """A batch's life. `outcome` says what a stopping batch will end as."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"  # claims stop; lines in flight are cancelled (cancel or expiry)
    FINALIZING = "finalizing"  # no more results; output files being written
    COMPLETED = "completed"
    FAILED = "failed"  # refused at validation (its errors say why)
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ACTIVE = (Status.VALIDATING, Status.IN_PROGRESS, Status.CANCELLING, Status.FINALIZING)
ENDED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED)
# A line's error file entry when it never ran, by the outcome that stopped it.
NOT_RUN = {
    Status.CANCELLED: (
        "batch_cancelled",
        "This request was not executed: the batch was cancelled.",
    ),
    Status.EXPIRED: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}


@dataclass(frozen=True)
class FileRecord:
    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    created_at: int
    storage_key: str
    num_lines: int | None = None
    mimetype: str | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class BatchRecord:
    id: str
    owner: str
    api: str  # "openai" | "mistral"
    endpoint: str
    input_files: list[str]
    completion_window: str
    created_at: int
    expires_at: int
    status: Status = Status.VALIDATING
    outcome: Status | None = None
    model: str | None = None
    metadata: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed


@dataclass(frozen=True)
class LineSpec:
    """One request of an input file, as validation found it."""

    line_no: int
    custom_id: str
    file_index: int
    offset: int
    length: int


@dataclass(frozen=True)
class ClaimedLine:
    """A line this gateway holds a lease on; `attempts` fences its commit."""

    batch_id: str
    line_no: int
    custom_id: str
    attempts: int
    storage_key: str  # the input file it is in
    offset: int
    length: int
    endpoint: str
    owner: str  # the batch's owner (a file_id in its body must be theirs)
    model: str | None = None  # the batch's model (Mistral: lines may omit it)


@dataclass(frozen=True)
class LineResult:
    """What one line answered: its HTTP status, body (JSON bytes) and cost."""

    status_code: int
    body: bytes
    request_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code <= 299


@dataclass(frozen=True)
class FinishedLine:
    """A line as the output files need it (read back in line order at finalizing)."""

    line_no: int
    custom_id: str
    state: str  # succeeded | failed | pending | running (never ran: cancelled or expired)
    status_code: int | None
    request_id: str | None
    result: bytes | None


@dataclass
class ValidationErrors:
    """The first few problems of an input file (OpenAI's `errors.data`), and how many."""

    limit: int = 10
    data: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    _places: list[tuple[int, int]] = field(default_factory=list, repr=False)

    def add(
        self,
        code: str,
        message: str,
        line: int | None = None,
        param: str | None = None,
        file: int = 0,
    ) -> None:
        """Keep the first `limit` errors by place (`file` index, `line` in it): repeated
        custom_ids are found a chunk later than the other errors of their lines."""
        self.count += 1
        place = (file, line or 0)
        at = bisect.bisect_right(self._places, place)
        if at >= self.limit:
            return
        self._places.insert(at, place)
        self.data.insert(at, {"code": code, "message": message, "param": param, "line": line})
        if len(self.data) > self.limit:
            self._places.pop()
            self.data.pop()

    def summary(self) -> list[dict[str, Any]]:
        """The errors kept, plus one that counts the rest."""
        rest = self.count - len(self.data)
        if rest <= 0:
            return list(self.data)
        more = f"{rest} more lines have errors (only the first {len(self.data)} are listed)"
        return [*self.data, {"code": "more_errors", "message": more, "param": None, "line": None}]


@dataclass(frozen=True)
class WebhookEvent:
    """A batch's end as the webhook event to send (the body is fixed once: retries send the
    same bytes under the same id)."""

    id: str
    batch_id: str
    type: str
    payload: bytes
    created_at: int


@dataclass(frozen=True)
class Delivery:
    """A webhook event this gateway holds a lease on; `attempts` counts this one and fences
    its outcome."""

    id: str
    batch_id: str
    type: str
    payload: bytes
    attempts: int
