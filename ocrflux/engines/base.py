"""The page contract: a page image in, a decoded page (or a fallback) out, with usage.

Documents, chat shaping, streaming and the CLI depend on this contract only; the vLLM engine
(`ocrflux.engines.vllm`) and the embedded CPU engine (`ocrflux.engines.local`) are the only
places that know how a page is actually read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ocrflux.errors import APIError
from ocrflux.format.page import PageResponse
from ocrflux.intake.images import PreparedImage
from ocrflux.protocol import Usage


@dataclass(frozen=True)
class PageJob:
    """What reading one page needs besides its image."""

    request_id: str
    # The client's cap on one page's answer (None: as much as the context leaves).
    max_tokens: int | None = None
    # Fairness key for admission control: pages of one request share it (default: the request).
    flow: str = ""

    @property
    def flow_key(self) -> str:
        return self.flow or self.request_id


@dataclass
class PageResult:
    """One page's outcome: the decoded page, or a fallback (raw text, and why it failed)."""

    page: PageResponse | None
    raw_text: str = ""
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    # The engine that read the page ("vllm", "local"); "" when none did (it never rendered).
    engine: str = ""
    # Set when the page could not be read at all (e.g. the upstream failed after its retries).
    error: APIError | None = None

    @property
    def fallback(self) -> bool:
        return self.page is None

    @property
    def shaped_input(self) -> PageResponse | str:
        return self.page if self.page is not None else self.raw_text


# Response header naming the engine(s) that read an answer's pages, e.g. "local" or "vllm,local".
BACKEND_HEADER = "X-OCRFlux-Backend"


def engines_used(results: Iterable[PageResult]) -> str:
    """The engines that read these pages, in order of first use, comma-separated."""
    return ",".join(dict.fromkeys(r.engine for r in results if r.engine))


@dataclass
class MergeAnswer:
    """Which elements of two consecutive pages continue each other, and what asking cost."""

    pairs: list[tuple[int, int]]
    usage: Usage = field(default_factory=Usage)


@dataclass
class TableMergeAnswer:
    """Two table fragments merged into one HTML table (None: do not merge), and the cost."""

    table: str | None
    usage: Usage = field(default_factory=Usage)


class PageEngine(Protocol):
    """Reads page images; optionally finds and merges what a page break split."""

    @property
    def name(self) -> str:
        """The engine a page sent now would be read by (`X-OCRFlux-Backend` of a stream)."""
        ...

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        """Read one page. Never raises for a page the engine could not read: that is a
        fallback result (with `error` set when nothing was read); raises `APIError` only when
        the request itself is wrong (the client's fault) and no page can succeed."""
        ...

    def check_page(self, width: int, height: int, job: PageJob) -> None:
        """Raise `APIError` when a page sent at width x height cannot be read for this job
        (a budget the engine's context cannot hold). Called before any pixel is decoded, so a
        request that cannot work costs nothing; an engine without such limits does nothing."""
        ...

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        """Pairs (i, j): element i of `previous` continues as element j of `following`."""
        ...

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        """One HTML table from two fragments of a table split by a page break."""
        ...
