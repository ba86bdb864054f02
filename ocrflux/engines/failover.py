"""`FailoverEngine`: vLLM first, the local engine when every vLLM replica is down.

`FALLBACK_BACKEND=local` wraps the vLLM engine in this. A page goes to the local engine when
the upstream layer holds no replica healthy (every one ejected: its health checks failed, or
it kept failing calls), or when the vLLM engine gave up on the page because no model server
could be reached (its `upstream_unavailable` error, after the upstream layer's retries: the
last replica is only ejected by a failed check, so calls find an outage first). Such a
page is the local engine's `PageResult` (`engine="local"`), so every answer says which engine
read each page. Anything else vLLM answers, a refusal included, stays vLLM's answer: the
fallback is for a missing model server, not for a page the model read badly.

The cross-page merge questions go to vLLM while it is up and to the local engine's text rules
when it is down (a merge call that fails is "no merge" either way, never a failed document).
"""

from __future__ import annotations

import logging

from ocrflux.engines.base import MergeAnswer, PageEngine, PageJob, PageResult, TableMergeAnswer
from ocrflux.intake.images import PreparedImage
from ocrflux.upstream import Upstream

logger = logging.getLogger("ocrflux.engines")

# The vLLM engine's error for "no model server could be reached" (after the upstream retries).
UNAVAILABLE = "upstream_unavailable"


def upstream_down(upstream: Upstream) -> bool:
    """True when the upstream layer holds no replica healthy (every one ejected)."""
    return not upstream.replicas.any_healthy()


class FailoverEngine:
    """The primary engine while the model server is up; the fallback engine when it is down."""

    def __init__(self, primary: PageEngine, fallback: PageEngine, upstream: Upstream) -> None:
        self.primary = primary
        self.fallback = fallback
        self.upstream = upstream

    @property
    def name(self) -> str:
        """The engine a page sent now would go to."""
        return self.fallback.name if upstream_down(self.upstream) else self.primary.name

    async def read_page(self, image: PreparedImage, job: PageJob) -> PageResult:
        if upstream_down(self.upstream):
            return await self.fallback.read_page(image, job)
        result = await self.primary.read_page(image, job)
        if result.error is not None and result.error.code == UNAVAILABLE:
            logger.warning("vLLM unreachable: page read by the %s engine", self.fallback.name)
            return await self.fallback.read_page(image, job)
        return result

    def check_page(self, width: int, height: int, job: PageJob) -> None:
        """The primary's limits while it is up (a page may still end up on the fallback)."""
        if not upstream_down(self.upstream):
            self.primary.check_page(width, height, job)

    async def detect_merges(
        self, previous: list[str], following: list[str], job: PageJob
    ) -> MergeAnswer:
        if upstream_down(self.upstream):
            return await self.fallback.detect_merges(previous, following, job)
        return await self.primary.detect_merges(previous, following, job)

    async def merge_tables(self, first: str, second: str, job: PageJob) -> TableMergeAnswer:
        if upstream_down(self.upstream):
            return await self.fallback.merge_tables(first, second, job)
        return await self.primary.merge_tables(first, second, job)
