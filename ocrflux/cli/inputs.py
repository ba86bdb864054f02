"""Which documents a `convert` run reads, and where each one's Markdown goes.

The OCRFlux toolkit names a result `basename(orig_path).split(".")[0]`, so `a/report.pdf` and
`b/report.pdf` (or `report.v1.pdf` and `report.v2.pdf`) overwrite each other. Here the output
keeps the input's folders below the folder (or glob prefix) it was found in: folder argument
`docs/` with `docs/2023/report.pdf` gives `OUTDIR/2023/report/report.md`; a file argument gives
`OUTDIR/report/report.md`, the toolkit's layout. Only the last suffix is dropped
(`report.v2.pdf` -> `report.v2`). Two files in one folder with the same stem (`scan.pdf`,
`scan.png`) keep their suffix (`scan.pdf/scan.pdf.md`); two different files that would still
write the same Markdown (given as separate arguments) are refused before anything is sent.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

# What a folder or a glob contributes; a file named on the command line is sent whatever its
# suffix (the gateway says what it cannot read).
DOCUMENT_SUFFIXES = frozenset(
    {".pdf", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
_GLOB_MAGIC = frozenset("*?[")


class InputError(Exception):
    """The command line names nothing to convert, or something that cannot be converted."""


@dataclass(frozen=True)
class Document:
    """One input file and where its results go."""

    path: Path  # the file, as found (for reading and for JSONL's `orig_path`)
    folder: PurePath  # its output folder below OUTDIR: `<subfolders>/<name>`
    name: str

    @property
    def orig_path(self) -> str:
        return str(self.path)

    def markdown_path(self, outdir: Path) -> Path:
        return outdir / self.folder / f"{self.name}.md"


@dataclass(frozen=True)
class _Found:
    path: Path
    relative: PurePath  # below the folder it was found in


def find_documents(arguments: Sequence[str]) -> list[Document]:
    """Files, folders (recursively, hidden entries skipped) and globs -> documents, in order."""
    found: list[_Found] = []
    seen: set[Path] = set()
    for argument in arguments:
        for item in _expand(argument):
            key = item.path.resolve()
            if key not in seen:  # `docs docs/a.pdf` names a.pdf twice
                seen.add(key)
                found.append(item)
    if not found:
        raise InputError("no documents found in " + ", ".join(arguments))
    return _name(found)


def _expand(argument: str) -> Iterator[_Found]:
    path = Path(argument)
    if path.is_dir():
        yield from _walk(path, path)
    elif path.is_file():
        yield _Found(path, PurePath(path.name))
    elif _GLOB_MAGIC & set(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            raise InputError(f"nothing matches {argument!r}")
        root = _glob_root(argument)
        for match in matches:
            matched = Path(match)
            if matched.is_dir():
                yield from _walk(matched, root)
            elif matched.suffix.lower() in DOCUMENT_SUFFIXES:
                yield _Found(matched, PurePath(os.path.relpath(matched, root)))
    else:
        raise InputError(f"no such file or folder: {argument}")


def _walk(folder: Path, root: Path) -> Iterator[_Found]:
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in DOCUMENT_SUFFIXES:
                continue
            path = Path(current, name)
            yield _Found(path, PurePath(os.path.relpath(path, root)))


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (`scans/2023/**/*.pdf` -> scans/2023)."""
    parts = PurePath(pattern).parts
    plain = []
    for part in parts[:-1]:
        if _GLOB_MAGIC & set(part):
            break
        plain.append(part)
    return Path(*plain) if plain else Path(".")


def _name(found: Iterable[_Found]) -> list[Document]:
    items = list(found)
    # Stems shared by files of one folder: those keep their suffix.
    siblings: dict[tuple[PurePath, str], int] = defaultdict(int)
    for item in items:
        siblings[(_source_folder(item), item.path.stem)] += 1
    documents = []
    owners: dict[PurePath, Path] = {}
    clashes = []
    for item in items:
        stem = item.path.stem
        name = item.path.name if siblings[(_source_folder(item), stem)] > 1 else stem
        folder = item.relative.parent / name
        if folder in owners:
            clashes.append(f"{owners[folder]} and {item.path} would both write {folder}/")
            continue
        owners[folder] = item.path
        documents.append(Document(item.path, folder, name))
    if clashes:
        raise InputError(
            "; ".join(clashes) + " (give their common folder instead, or convert them in "
            "separate runs with different -o folders)"
        )
    return documents


def _source_folder(item: _Found) -> PurePath:
    return PurePath(os.path.normpath(item.path.parent.resolve()))
