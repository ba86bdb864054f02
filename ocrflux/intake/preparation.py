"""The async face of image work, owned by the app: any source in, a PreparedImage out.

Decoding, resizing and encoding run in a bounded thread pool (Pillow releases the GIL), so
the event loop stays responsive while images are processed. Requests take turns in that pool:
each has at most `image_workers` jobs in it at once, so a request of 200 images holds the next
request back by a round of jobs, not by 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace as dataclass_replace
from functools import partial
from typing import TypeVar

import httpx
from PIL import Image

from ocrflux import inline_data
from ocrflux.intake.fetch import RemoteFetcher, Resolver
from ocrflux.intake.image_input import decode_base64_view
from ocrflux.intake.images import (
    ImageOptions,
    PreparedImage,
    Probe,
    finish,
    probe_bytes,
    probe_inline,
    rotate,
    scaled_size,
    shrink,
    toolkit_size,
)
from ocrflux.intake.tokens import plan_max_side
from ocrflux.observability import NO_REQUEST_ID, request_id_var
from ocrflux.settings import Settings
from ocrflux.work_class import is_background

T = TypeVar("T")
# Inline images up to this many characters are checked on the event loop first (header-only
# work, ~0.2 ms per MB): most need no change, and then no thread hop is made at all.
CHECK_ON_LOOP_LIMIT = 4 * 1024 * 1024
_LOOP_BYTES = CHECK_ON_LOOP_LIMIT * 3 // 4  # the same, in decoded bytes


def _background() -> None:
    """Lower this worker thread's CPU priority (Linux: per thread), best effort.

    Pillow releases the GIL while decoding, resizing and encoding, so the workers compete with
    the event loop only for cores; at nice 10 the loop wins whenever both want one.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class ImagePreparer:
    """Owned by the app: every source in, PreparedImage out, CPU work in `image_workers` threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        resolver: Resolver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = ImageOptions.from_settings(settings)
        self.min_side = settings.image_min_side
        self.max_model_len = settings.max_model_len
        self._pool = ThreadPoolExecutor(
            settings.image_workers, thread_name_prefix="ocrflux-image", initializer=_background
        )
        self._workers = settings.image_workers
        self._turns: dict[str, _Flow] = {}  # request id -> its jobs in the pool
        # Batch lines' image work (ocrflux.work_class) holds at most half the pool, so a
        # client's images never queue behind more than that.
        self._background = asyncio.Semaphore(max(1, settings.image_workers // 2))
        self.fetcher = RemoteFetcher(settings, resolver=resolver, transport=transport)
        # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that: aligned with our
        # limit it never refuses an image we accept, and still guards every other Image.open.
        Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
        # Its warning band (limit..2x) holds only images we refuse anyway: noise in the logs.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in the pool, taking turns with other requests' jobs."""
        loop = asyncio.get_running_loop()
        key = request_id_var.get()
        if key == NO_REQUEST_ID:  # start-up, tools: nobody to take turns with
            return await loop.run_in_executor(self._pool, partial(fn, *args))
        flow = self._turns.get(key)
        if flow is None:
            flow = self._turns[key] = _Flow(asyncio.Semaphore(self._workers))
        flow.users += 1
        share = self._background if is_background() else contextlib.nullcontext()
        try:
            async with share, flow.slots:
                return await loop.run_in_executor(self._pool, partial(fn, *args))
        finally:
            flow.users -= 1
            if flow.users == 0:
                del self._turns[key]

    @property
    def flows(self) -> int:
        """Requests with image work waiting or running (for tests and metrics)."""
        return len(self._turns)

    async def prepare(self, url: str) -> PreparedImage:
        """`data:` URL, bare base64 or http(s) URL -> PreparedImage (ImageRejected if refused)."""
        return await self.finish(await self.probe(url))

    async def probe(self, url: str) -> Probe:
        """Any source read up to its header (refused if unacceptable); no pixel decoded.

        What the header tells (size, orientation, format) decides the rest: a request whose
        images cannot fit the context is refused before any pixel work.
        """
        if url[:8].lower().startswith(("http://", "https://")):
            return await self.probe_data(await self.fetcher.fetch(url))
        payload = inline_data.take(url)
        if payload is not None:  # a big PDF or TIFF payload, kept as bytes: not an image
            limit = self.options.max_bytes
            try:
                return await self.probe_data(await self._run(decode_base64_view, payload, limit))
            finally:
                payload.release()
        quick = None
        if len(url) <= CHECK_ON_LOOP_LIMIT:
            quick = probe_inline(url, self.options, quick=True)
        # Only a quick probe declines (then the thread's does the work).
        return quick or _certain(await self._run(probe_inline, url, self.options))

    async def probe_data(self, data: bytes) -> Probe:
        """Encoded image bytes (already fetched or decoded) read up to the header."""
        quick = probe_bytes(data, self.options, quick=True) if len(data) <= _LOOP_BYTES else None
        return quick or _certain(await self._run(probe_bytes, data, self.options))

    async def finish(self, probe: Probe, cap: int | None = None) -> PreparedImage:
        """The prepared image, its longest side at most `cap` too (the token budget's cap).

        Pixel work runs in the pool; an image that needs none is finished on the loop.
        """
        opts = self.options
        if cap is not None and (opts.max_side <= 0 or cap < opts.max_side):
            opts = dataclass_replace(opts, max_side=cap)
        if probe.source <= _LOOP_BYTES and not probe.needs_work(opts):
            return finish(probe, opts)
        return await self._run(finish, probe, opts)

    async def rotate(self, image: PreparedImage, degrees: int) -> PreparedImage:
        """Clockwise by a multiple of 90 degrees, as OCRFlux means it (see images.rotate)."""
        if degrees % 360 == 0:
            return image
        return await self._run(rotate, image, degrees, self.options)

    async def fit(
        self, images: Sequence[PreparedImage], text_tokens: int, max_tokens: int
    ) -> list[PreparedImage]:
        """Shrink images until images + text + max_tokens fit max_model_len, or ImageRejected."""
        cap = self.plan([(i.width, i.height) for i in images], text_tokens, max_tokens)
        if cap is None:  # the common case: no thread hop
            return list(images)
        return list(await asyncio.gather(*(self._shrunk(i, cap) for i in images)))

    def plan(
        self, sizes: Sequence[tuple[int, int]], text_tokens: int, max_tokens: int
    ) -> int | None:
        """The longest-side cap that fits images + text + max_tokens in max_model_len (None:
        they fit as they are); ContextTooSmall if even the readable floor does not."""
        return plan_max_side(
            sizes,
            text_tokens=text_tokens,
            max_tokens=max_tokens,
            max_model_len=self.max_model_len,
            min_side=self.min_side,
            resize=toolkit_size if self.options.pages else scaled_size,
        )

    async def _shrunk(self, image: PreparedImage, cap: int) -> PreparedImage:
        if max(image.width, image.height) <= cap:
            return image
        return await self._run(shrink, image, cap, self.options)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Flow:
    """One request's share of the pool: `slots` jobs at once, kept while `users` need it."""

    __slots__ = ("slots", "users")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.slots = slots
        self.users = 0


def _certain(probe: Probe | None) -> Probe:
    assert probe is not None  # only a quick probe declines
    return probe
