"""A batch line's `custom_id` is the document's output folder below OUTDIR, so the results of a
batch can be written by a later `ocrflux batch wait`, which knows only the batch's id.

`in/sub/a.pdf` converted into OUTDIR `out` writes `out/sub/a/a.md`: its custom_id is `sub/a`.
An id read back from the gateway is outside input: one that is not such a relative folder
(absolute, empty parts, `.` or `..`, NUL, too long) or that resolves outside OUTDIR (through a
link) names no file, and nothing is written for it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ocrflux.cli.inputs import Document
from ocrflux.cli.printable import printable

MAX_CUSTOM_ID = 512  # the gateway's limit (and OpenAI's)


class CustomIdError(ValueError):
    """A custom_id that names no output folder below OUTDIR."""


def custom_id(document: Document) -> str:
    """The line's custom_id: the document's output folder, `/`-separated."""
    return PurePosixPath(*document.folder.parts).as_posix()


def check_custom_id(value: str) -> str | None:
    """Why `value` is not a custom_id this CLI could have written (None when it is)."""
    if not value:
        return "it is empty"
    if len(value) > MAX_CUSTOM_ID:
        return f"it is longer than {MAX_CUSTOM_ID} characters"
    if "\x00" in value or "\\" in value:
        return "it holds a NUL or a backslash"
    if value.startswith("/"):
        return "it is an absolute path"
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' part"
    return None


def document_for(value: str, outdir: Path, orig_path: str | None = None) -> Document:
    """The document a custom_id read from the gateway stands for, its Markdown below `outdir`
    (CustomIdError otherwise); `orig_path` is the input file's name when known."""
    problem = check_custom_id(value)
    if problem is not None:
        raise CustomIdError(f"custom_id '{printable(value[:200])}' names no output file: {problem}")
    folder = PurePosixPath(value)
    document = Document(Path(orig_path or value), Path(*folder.parts), folder.name)
    target = document.markdown_path(outdir)
    if not target.resolve().is_relative_to(outdir.resolve()):
        raise CustomIdError(
            f"custom_id '{printable(value)}' would be written outside the output folder "
            f"(to {printable(str(target.resolve()))})"
        )
    return document
