"""What the local engine raises; plain exceptions with one message so they cross processes."""

from __future__ import annotations


class LocalOCRError(Exception):
    """Base class of the local engine's errors."""


class ModelNotShipped(LocalOCRError):
    """A recogniser model was asked for that the installed rapidocr wheel does not ship.

    Raised instead of letting rapidocr download it: the engine never fetches at run time."""


class UnreadableImage(LocalOCRError):
    """The page bytes are not an image Pillow can decode."""


class WorkerCrashed(LocalOCRError):
    """A worker process died while reading a page (the pool starts new ones)."""


class UnreadableScript(LocalOCRError):
    """The page shows text in a script that no installed recogniser reads."""
