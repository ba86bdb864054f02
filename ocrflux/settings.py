"""All configuration, read once from the environment (and an optional .env file)."""

from __future__ import annotations

import base64
import ipaddress
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the gateway; names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # --- serving -----------------------------------------------------------------------
    api_host: str = Field("0.0.0.0", description="Address uvicorn binds to.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port uvicorn listens on.")
    debug: bool = Field(False, description="Debug logging (never logs image bodies or keys).")
    api_keys: CommaList = Field(
        default_factory=list,
        description="Comma-separated keys; when set, /v1/* needs `Authorization: Bearer <key>`.",
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 beyond)."
    )
    max_request_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest request head: request line and headers (431 beyond).",
    )
    request_header_timeout: float = Field(
        10.0, gt=0, description="Seconds for a request head to arrive completely (408 beyond)."
    )
    request_body_timeout: float = Field(
        120.0, gt=0, description="Seconds for a request body to arrive after its head (408 beyond)."
    )
    max_body_memory_bytes: int = Field(
        192 * 1024 * 1024,
        ge=1024 * 1024,
        description="Request-body bytes held in memory at once, all requests together (a body "
        "past it waits up to 2 s for room, then 503; uploads are written to disk as they arrive).",
    )
    max_json_items: int = Field(
        100_000,
        ge=100,
        description="Most commas + brackets in a JSON body (bounds parsing time; 400 beyond).",
    )
    max_messages_per_request: int = Field(
        1024, ge=1, description="Messages accepted in one chat request (400 beyond)."
    )
    max_content_parts_per_request: int = Field(
        2048, ge=1, description="Content parts accepted in one chat request, all messages together."
    )
    web_ui: bool = Field(
        True, description="Serve the web page at `GET /` (a client of `/v1/ocr`; false: 404)."
    )

    # --- upstream vLLM -----------------------------------------------------------------
    vllm_url: str = Field("http://localhost", description="vLLM base URL (scheme and host).")
    vllm_port: int = Field(30024, ge=1, le=65535, description="vLLM port.")
    vllm_api_key: str = Field("", description="Key vLLM was started with (`--api-key`), if any.")
    ocrflux_model: str = Field(
        "ChatDOC/OCRFlux-3B", min_length=1, description="Model name vLLM serves."
    )
    max_retries: int = Field(1, ge=0, le=10, description="Further attempts on retryable failures.")
    retry_backoff: float = Field(0.25, ge=0, le=30, description="First backoff delay, seconds.")
    retry_backoff_max: float = Field(4.0, ge=0, le=120, description="Largest backoff delay.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to open an upstream connection.")
    read_timeout: float = Field(300.0, gt=0, description="Seconds to wait for upstream bytes.")
    total_timeout: float = Field(600.0, gt=0, description="Deadline for a whole request.")
    upstream_attempt_timeout: float = Field(
        180.0,
        gt=0,
        description="Seconds one upstream attempt may take (a stream: until its head); past "
        "it the replica counts as failed and the call goes to another healthy replica.",
    )
    pool_max_connections: int = Field(256, ge=1, description="Upstream connection pool size.")
    pool_max_keepalive: int = Field(64, ge=0, description="Idle upstream connections kept.")
    upstream_transport: Literal["lean", "httpx"] = Field(
        "lean", description="`lean`: the gateway's httptools transport; `httpx`: httpcore."
    )
    health_check_interval: float = Field(
        15.0, ge=0, description="Seconds between background upstream checks (0: off)."
    )
    vllm_urls: CommaList = Field(
        default_factory=list,
        description="Comma-separated replica base URLs, each with its port; "
        "when set, VLLM_URL/VLLM_PORT are not used.",
    )
    eject_after_failures: int = Field(
        3, ge=1, le=100, description="Consecutive failures that take a replica out of rotation."
    )
    max_concurrent_requests: int = Field(
        64, ge=1, description="Upstream calls in flight, all replicas together."
    )
    max_queue: int = Field(
        1024,
        ge=0,
        description="Requests waiting for an upstream slot; a document's waiting pages count "
        "once (429 beyond).",
    )
    queue_timeout: float = Field(
        60.0, gt=0, description="Seconds a call may wait for a slot (503 beyond)."
    )
    max_upstream_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Largest upstream response body (502 beyond)."
    )
    client_write_timeout: float = Field(
        60.0, gt=0, description="Seconds a stream waits for a client that stopped reading."
    )
    ready_cache_seconds: float = Field(
        1.0, ge=0, description="Seconds /ready reuses its upstream check (callers share one)."
    )
    hide_upstream_urls: bool = Field(
        False, description="Show replicas as `replica-N` instead of URLs in /health and /ready."
    )
    shutdown_grace: float = Field(
        30.0, ge=0, description="Seconds in-flight requests may finish after SIGTERM."
    )
    metrics_api_key: str = Field(
        "", description="When set, GET /metrics needs `Authorization: Bearer <key>`."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="`text`: readable lines; `json`: one JSON object per line."
    )

    # --- images --------------------------------------------------------------------------
    image_max_side: int = Field(1024, ge=0, description="Longest image side sent (0: no resize).")
    image_min_side: int = Field(
        448, ge=28, description="Readable floor when shrinking images to fit the context."
    )
    image_format: Literal["png", "jpeg", "auto"] = Field(
        "auto", description="Re-encoding: `png`, `jpeg`, or `auto` (JPEG for JPEG sources)."
    )
    image_jpeg_quality: int = Field(92, ge=1, le=100, description="JPEG quality when re-encoding.")
    image_workers: int = Field(2, ge=1, le=64, description="Threads for image work.")
    max_images_per_request: int = Field(32, ge=1, description="Images accepted in one request.")
    max_image_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest encoded image (data URL or download)."
    )
    max_image_pixels: int = Field(
        64_000_000, ge=1, description="Largest decoded image (width x height)."
    )
    max_model_len: int = Field(8192, ge=256, description="vLLM's --max-model-len (token budget).")
    remote_images: bool = Field(True, description="Download http(s) image URLs.")
    remote_image_allowlist: CommaList = Field(
        default_factory=list,
        description="CIDRs that remote fetching may reach despite the SSRF guard.",
    )
    remote_image_timeout: float = Field(10.0, gt=0, description="Seconds for one image download.")
    remote_image_max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed.")

    # --- documents ---------------------------------------------------------------------
    max_document_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest document (PDF, TIFF, image) accepted."
    )
    max_document_pages: int = Field(
        1000, ge=1, description="Most pages read from one document (selected pages count)."
    )
    max_request_pages: int = Field(
        1000,
        ge=1,
        description="Most pages read for one request, all its documents and images together.",
    )
    render_workers: int = Field(2, ge=1, le=64, description="Processes rendering PDF pages.")
    render_page_cpu_seconds: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="CPU seconds a page (or opening a document) may take in a render worker; "
        "past it that worker is ended and the page alone fails.",
    )
    pages_in_flight: int = Field(
        16, ge=1, le=1024, description="Pages of one document rendered or read at once."
    )
    document_timeout: float = Field(
        3600.0, gt=0, description="Deadline for a /v1/ocr document (chat keeps TOTAL_TIMEOUT)."
    )
    max_page_error_rate: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Largest share of fallback pages before a document fails (toolkit: 0.004).",
    )

    # --- OCRFlux -------------------------------------------------------------------------
    prompt_mode: Literal["ocrflux", "passthrough"] = Field(
        "ocrflux", description="`ocrflux`: one trained page prompt per image; else forward as is."
    )
    page_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Re-asks of a page whose answer is not page JSON or whose call failed, "
        "0.1 hotter each (the toolkit's batch pipeline allows 8 attempts; 4 keep a page that "
        "runs to its full budget every time within TOTAL_TIMEOUT).",
    )
    page_max_tokens: int | None = Field(
        None,
        ge=1,
        description="Optional cap on a page's answer; unset: all the room MAX_MODEL_LEN leaves "
        "after the page's prompt, as the toolkit.",
    )
    keep_image_placeholders: bool = Field(
        False, description="Keep `<Image>(x1,y1),(x2,y2)</Image>` placeholders in page text."
    )
    passthrough_checkboxes: bool = Field(
        False, description="Normalise checkbox glyphs in passthrough answers too."
    )

    # --- page engines ----------------------------------------------------------------------
    ocr_backend: Literal["vllm", "local"] = Field(
        "vllm",
        description="Who reads pages: `vllm` (OCRFlux-3B) or `local` (the embedded CPU engine, "
        "`cpu` extra; no GPU, no vLLM).",
    )
    local_workers: int = Field(
        2, ge=1, le=64, description="Local engine: worker processes (pages read at once)."
    )
    local_threads: int = Field(
        1, ge=1, le=64, description="Local engine: ONNX Runtime threads per worker."
    )
    local_worker_max_rss_mb: int = Field(
        1024,
        ge=0,
        le=1_048_576,
        description="Local engine: a worker whose resident memory is past this (MB) after a "
        "page is replaced by a fresh one (0: no ceiling).",
    )
    local_tesseract: bool = Field(
        True,
        description="Local engine: read pages in scripts its recogniser cannot read (Korean, "
        "Arabic, ...) with Tesseract when the `tesseract` binary and that script's language pack "
        "are installed; otherwise such a page is a fallback page, never an empty success.",
    )
    local_recogniser: Literal["rapidocr", "tesseract"] = Field(
        "rapidocr",
        description="Local engine: who reads the text lines: `rapidocr` (the `cpu` extra's "
        "models: Latin and Chinese) or `tesseract` (Debian's tesseract-ocr, English; several "
        "times faster per page); layout, tables and checkboxes are the engine's either way.",
    )
    fallback_backend: Literal["none", "local"] = Field(
        "none",
        description="`local`: pages go to the local engine while every vLLM replica is down "
        "(with OCR_BACKEND=vllm).",
    )

    # --- batch jobs --------------------------------------------------------------------------
    data_dir: str = Field(
        "data",
        min_length=1,
        description="Folder for the jobs database (SQLite) and file bytes (uploads, batch "
        "outputs); in a fleet, a volume every gateway mounts.",
    )
    jobs_database_url: str = Field(
        "",
        description="Jobs database: empty for SQLite under DATA_DIR, or "
        "`postgresql://user:pass@host/db` for gateways that share batches.",
    )
    batch_worker: bool = Field(
        True, description="Run batch lines on this gateway (false: it only takes API calls)."
    )
    batch_lines_in_flight: int = Field(
        32, ge=1, le=4096, description="Batch lines this gateway runs at once."
    )
    batch_lease_seconds: float = Field(
        60.0,
        ge=2,
        le=3600,
        description="A claimed batch line's lease; a gateway that dies loses its lines after it.",
    )
    batch_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between looks for batch work in the database."
    )
    batch_max_lines: int = Field(
        50_000, ge=1, description="Most requests in one batch (its input files together)."
    )
    max_file_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="Largest file `POST /v1/files` accepts (413)."
    )
    max_active_batches: int = Field(
        16, ge=1, description="Batches one API key may have running at once (429 beyond)."
    )
    jobs_retention_hours: float = Field(
        720.0,
        gt=0,
        description="Files, and batches that ended, are deleted after this many hours.",
    )

    webhook_url: str = Field(
        "",
        description="Where a batch's end is POSTed as OpenAI's webhook event (`batch.completed`, "
        "...); empty: no webhooks.",
    )
    webhook_secret: str = Field(
        "",
        validate_default=True,
        description="Signing secret of the webhooks, `whsec_` + base64 (what the openai SDK's "
        "`webhooks.unwrap` takes); required with WEBHOOK_URL.",
    )
    webhook_allowed_hosts: CommaList = Field(
        default_factory=list,
        description="Host names, addresses or CIDRs WEBHOOK_URL may reach despite the SSRF guard "
        "(internal receivers).",
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds one webhook delivery attempt may take."
    )
    webhook_max_attempts: int = Field(
        10, ge=1, le=100, description="Attempts at delivering one webhook event before it fails."
    )
    webhook_retry_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Wait before a webhook's first retry; doubled each retry, at most an hour.",
    )

    _split = field_validator(
        "api_keys", "remote_image_allowlist", "vllm_urls", "webhook_allowed_hosts", mode="before"
    )(_split_commas)

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str) -> str:
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if value and (scheme not in ("http", "https") or not rest.split("/", 1)[0]):
            raise ValueError("must be an http(s)://host/... URL")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: str, info: ValidationInfo) -> str:
        # The message never shows the secret.
        if not value:
            if info.data.get("webhook_url"):
                raise ValueError("WEBHOOK_URL needs WEBHOOK_SECRET (whsec_ + base64) to sign with")
            return value
        body = value.removeprefix("whsec_")
        try:
            key = base64.b64decode(body, validate=True)
        except ValueError:
            key = b""
        if not value.startswith("whsec_") or not key:
            raise ValueError("must be whsec_ followed by base64 (padded), as OpenAI's secrets are")
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower().strip("[]") for host in value]

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        # A header value reaches the app as Latin-1: a non-ASCII key sent as UTF-8 can never
        # match (and the message must not show the key).
        if not all(key.isascii() and key.isprintable() for key in value):
            raise ValueError("keys must be printable ASCII (a client cannot send others)")
        return value

    @field_validator("ocr_backend", "fallback_backend")
    @classmethod
    def _local_reads_pages(cls, value: str, info: ValidationInfo) -> str:
        if value == "local" and info.data.get("prompt_mode") == "passthrough":
            raise ValueError(
                "the local engine reads pages in PROMPT_MODE=ocrflux; PROMPT_MODE=passthrough "
                "forwards requests to vLLM as they are"
            )
        return value

    @property
    def local_engine_wanted(self) -> bool:
        """True when the local engine reads pages, always or while vLLM is down."""
        return self.ocr_backend == "local" or self.fallback_backend == "local"

    @field_validator("page_max_tokens", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vllm_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        host = value.split("://", 1)[1]
        if not host or any(c in host for c in "/@?#") or host.rsplit("]", 1)[-1].count(":"):
            raise ValueError("must be scheme://host only; put the port in VLLM_PORT")
        return value

    @field_validator("vllm_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        checked = []
        for item in value:
            url = item.rstrip("/")
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rpartition(":")
            if scheme not in ("http", "https") or not host or any(c in rest for c in "/@?#"):
                raise ValueError(f"{item!r} must be http(s)://host:port")
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{item!r} needs a port: http(s)://host:port")
            if url in checked:
                raise ValueError(f"{item!r} is listed twice")
            checked.append(url)
        return checked

    @field_validator("remote_image_allowlist")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError naming the item
        return value

    @property
    def ocr_request_bytes(self) -> int:
        """A `/v1/ocr` body: a document may arrive base64-encoded inside JSON (4/3 growth)."""
        return max(self.max_request_bytes, self.max_document_bytes * 4 // 3 + (1 << 20))

    @property
    def max_line_bytes(self) -> int:
        """A batch line holds one request body (either endpoint's)."""
        return self.ocr_request_bytes + 4096

    @cached_property
    def upstream_urls(self) -> list[str]:
        """Base URLs of the vLLM replicas: VLLM_URLS, else VLLM_URL:VLLM_PORT."""
        return list(self.vllm_urls) or [f"{self.vllm_url}:{self.vllm_port}"]
