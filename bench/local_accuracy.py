"""The local engine against Tesseract 5 on real pages with ground truth written by others.

    python -m bench.local_accuracy --docling /path/to/docling        # a checkout or git dir
    python -m bench.local_accuracy --baseline 6f140e1 --no-scans     # before/after, same run

The pages are the PDFs of docling's test set (tests/data/pdf/sources, MIT) with docling's own
Markdown of each (tests/data/pdf/groundtruth) as the truth: papers, a two-column handbook page,
tables, a Korean report and Arabic/Persian pages. They are not in this repository: point
`--docling` (or DOCLING_DATA) at a docling checkout or its bare git directory; without one the
benchmark says so and exits 0. Every page is rendered with its longest side `--side` px (1024,
the gateway's IMAGE_MAX_SIDE: what the engine is handed in production) and, unless
`--no-scans`, also as a synthetic scan (rotated 1 degree, blurred, noise, JPEG quality 55).

Both engines read the same PNG, one thread each, one page at a time: the local engine through
`read_page` in a child process (so `--baseline REV` can run an older checkout), once with
rapidocr reading the lines (`local`) and once with Tesseract's words (`local-tess`,
LOCAL_RECOGNISER=tesseract), layout and all; bare Tesseract as
`tesseract page.png stdout -l LANG` with the document's right language pack (eng, kor+eng or
ara). Scores are per document (its pages' text joined, against the whole truth): normalised
Levenshtein similarity of the plain text (Markdown, HTML tags and checkbox marks stripped,
whitespace collapsed) and order-free word F1. Seconds per page are wall time per read.
Prints Markdown tables; nothing is written.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageFilter
from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCLING = Path("/work/.mirror/docling-project+docling/repo")

# name -> (script group, Tesseract language)
DOCUMENTS = {
    "2305.03393v1-pg9": ("latin", "eng"),
    "amt_handbook_sample": ("latin", "eng"),
    "code_and_formula": ("latin", "eng"),
    "multi_page": ("latin", "eng"),
    "picture_classification": ("latin", "eng"),
    "table_mislabeled_as_picture": ("latin", "eng"),
    "normal_4pages": ("korean", "kor+eng"),
    "right_to_left_01": ("arabic", "ara"),
    "right_to_left_02": ("arabic", "ara"),
    "right_to_left_03": ("arabic", "ara"),
}

_CHILD = r"""
import inspect, json, sys, time
from ocrflux.engines.local.ocr import Recogniser
from ocrflux.engines.local.reader import read_page
recogniser = Recogniser(1)
extra = ()
if len(inspect.signature(read_page).parameters) > 2:
    from ocrflux.engines.local.tesseract import Tesseract
    extra = (Tesseract.find(),)
paths = sys.argv[1:]
if paths[0] == "--tesseract-lines":
    from ocrflux.engines.local.tesseract import TesseractLines
    recogniser, paths = TesseractLines(extra[0]), paths[1:]
for path in paths:
    started = time.perf_counter()
    try:
        markdown, error = read_page(open(path, "rb").read(), recogniser, *extra).markdown, None
    except Exception as exc:
        markdown, error = "", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    print(json.dumps({"path": path, "markdown": markdown, "seconds": seconds, "error": error}),
          flush=True)
"""


@dataclass
class Input:
    document: str
    variant: str  # "digital" or "scan"
    group: str
    language: str
    truth: str
    pages: list[Path] = field(default_factory=list)


@dataclass
class Reading:
    text: str
    seconds: list[float]
    errors: int


# --- the pages -------------------------------------------------------------------------------


class Docling:
    """docling's test data in a checkout (work tree) or a bare git directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: str) -> bytes | None:
        if (self.root / path).is_file():
            return (self.root / path).read_bytes()
        try:
            return subprocess.run(
                ["git", "--git-dir", str(self.root), "show", f"HEAD:{path}"],
                capture_output=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return None


def scanned(image: Image.Image, seed: int) -> Image.Image:
    """A synthetic scan: turned 1 degree, blurred, grain, JPEG quality 55."""
    turned = image.convert("L").rotate(
        1.0, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255
    )
    blurred = np.asarray(turned.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float64)
    grain = np.random.default_rng(seed).normal(0, 8, blurred.shape)
    noisy = Image.fromarray(np.clip(blurred + grain, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    noisy.save(out, "JPEG", quality=55)
    return Image.open(io.BytesIO(out.getvalue())).convert("L")


def build_inputs(source: Docling, workdir: Path, side: int, scans: bool) -> list[Input]:
    inputs = []
    for name, (group, language) in DOCUMENTS.items():
        pdf = source.read(f"tests/data/pdf/sources/{name}.pdf")
        truth = source.read(f"tests/data/pdf/groundtruth/{name}.md")
        if pdf is None or truth is None:
            print(f"skipped {name}: not in the docling data", file=sys.stderr)
            continue
        digital = Input(name, "digital", group, language, truth.decode())
        scan = Input(name, "scan", group, language, truth.decode())
        document = pdfium.PdfDocument(pdf)
        for k in range(len(document)):
            page = document[k]
            scale = side / max(page.get_size())
            image = page.render(scale=scale).to_pil().convert("RGB")
            path = workdir / f"{name}-{k + 1}.png"
            image.save(path)
            digital.pages.append(path)
            if scans:
                scan_path = workdir / f"{name}-{k + 1}-scan.png"
                scanned(image, seed=k).save(scan_path)
                scan.pages.append(scan_path)
        inputs.append(digital)
        if scans:
            inputs.append(scan)
    return inputs


# --- the engines -----------------------------------------------------------------------------


def read_local(
    pages: list[Path], root: Path, tesseract_lines: bool = False
) -> dict[Path, tuple[str, float, str | None]]:
    """Every page read by the local engine of the checkout at `root`, one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1", PYTHONPATH=str(root))
    flag = ["--tesseract-lines"] if tesseract_lines else []
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *flag, *map(str, pages)],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        check=True,
    )
    out = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        out[Path(record["path"])] = (record["markdown"], record["seconds"], record["error"])
    return out


def read_tesseract(page: Path, language: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        ["tesseract", str(page), "stdout", "-l", language],
        capture_output=True,
        env=dict(os.environ, OMP_THREAD_LIMIT="1"),
        check=False,
    )
    return done.stdout.decode("utf-8", "replace"), time.perf_counter() - started


# --- scoring ---------------------------------------------------------------------------------

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_MD = re.compile(r"^\s*(?:#+|[-*+]|\d+\.)\s+|\[(?:√|x| )\]|\|[\s|:-]*\||(?<!\w)\|(?!\w)", re.M)
_WORD = re.compile(r"\w+")


def plain(markdown: str) -> str:
    text = _TAG.sub(" ", _COMMENT.sub(" ", markdown))
    text = re.sub(r"^\|?\s*-[-\s|:]*$", " ", text, flags=re.M)  # table rules
    text = _MD.sub(" ", text).replace("|", " ")
    return " ".join(text.split())


def similarity(truth: str, text: str) -> float:
    return float(Levenshtein.normalized_similarity(plain(truth), plain(text)))


def word_f1(truth: str, text: str) -> float:
    want = collections.Counter(_WORD.findall(plain(truth).lower()))
    got = collections.Counter(_WORD.findall(plain(text).lower()))
    common = sum((want & got).values())
    if not want or not got or not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


# --- the run ---------------------------------------------------------------------------------


def checkout(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), rev],
        capture_output=True,
        check=True,
    )
    return into


def local_readings(
    inputs: list[Input], root: Path, tesseract_lines: bool = False
) -> dict[tuple[str, str], Reading]:
    pages = [p for i in inputs for p in i.pages]
    read = read_local(pages, root, tesseract_lines)
    out = {}
    for i in inputs:
        texts = [read[p] for p in i.pages]
        out[(i.document, i.variant)] = Reading(
            "\n\n".join(t for t, _, _ in texts),
            [s for _, s, _ in texts],
            sum(1 for _, _, e in texts if e),
        )
    return out


def tesseract_readings(inputs: list[Input]) -> dict[tuple[str, str], Reading]:
    out = {}
    for i in inputs:
        texts = [read_tesseract(p, i.language) for p in i.pages]
        out[(i.document, i.variant)] = Reading(
            "\n\n".join(t for t, _ in texts), [s for _, s in texts], 0
        )
    return out


def report(inputs: list[Input], engines: dict[str, dict[tuple[str, str], Reading]]) -> None:
    names = list(engines)
    head = " | ".join(f"{n} sim | {n} F1 | {n} s/page" for n in names)
    print(f"\n| document | variant | pages | {head} |")
    print("|---|---|---:|" + "---:|" * (3 * len(names)))
    scores: dict[str, dict[str, list[float]]] = {n: collections.defaultdict(list) for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for i in inputs:
        cells = []
        for n in names:
            r = engines[n][(i.document, i.variant)]
            sim, f1 = similarity(i.truth, r.text), word_f1(i.truth, r.text)
            for group in ("all", i.group if i.group == "latin" else "non-latin"):
                scores[n][group + " sim"].append(sim)
                scores[n][group + " F1"].append(f1)
            seconds[n] += r.seconds
            note = f" ({r.errors} fallback)" if r.errors else ""
            cells.append(f"{sim:.3f}{note} | {f1:.3f} | {statistics.mean(r.seconds):.2f}")
        print(f"| {i.document} | {i.variant} | {len(i.pages)} | {' | '.join(cells)} |")
    print(f"\n| {len(inputs)} inputs | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for key in ("all sim", "all F1", "latin sim", "latin F1", "non-latin sim", "non-latin F1"):
        values = [scores[n][key] for n in names]
        if values[0]:
            print(f"| {key} (mean) | " + " | ".join(f"{statistics.mean(v):.3f}" for v in values))
    print(
        "| seconds/page (mean, median, max) | "
        + " | ".join(
            f"{statistics.mean(s):.2f}, {statistics.median(s):.2f}, {max(s):.2f}"
            for s in seconds.values()
        )
        + " |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docling", type=Path, default=None, help="docling checkout or git dir")
    parser.add_argument("--side", type=int, default=1024, help="longest page side, px")
    parser.add_argument("--no-scans", action="store_true", help="digital pages only")
    parser.add_argument("--baseline", help="also run the local engine of this git revision")
    parser.add_argument("--only", help="comma-separated document names")
    parser.add_argument(
        "--no-rapidocr", action="store_true", help="skip LOCAL_RECOGNISER=rapidocr (slow)"
    )
    args = parser.parse_args(argv)
    source = args.docling or Path(os.environ.get("DOCLING_DATA", DEFAULT_DOCLING))
    if not source.exists():
        print(f"skipped: no docling test data at {source} (pass --docling)")
        return
    if args.only:
        for name in set(DOCUMENTS) - set(args.only.split(",")):
            del DOCUMENTS[name]
    with tempfile.TemporaryDirectory(prefix="local-accuracy-") as tmp:
        workdir = Path(tmp)
        inputs = build_inputs(Docling(source), workdir, args.side, not args.no_scans)
        pages = sum(len(i.pages) for i in inputs)
        print(f"{len(inputs)} inputs, {pages} page images, longest side {args.side} px", flush=True)
        engines: dict[str, dict[tuple[str, str], Reading]] = {}
        if args.baseline:
            base = checkout(args.baseline, workdir / "baseline")
            try:
                engines[f"local@{args.baseline}"] = local_readings(inputs, base)
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                    capture_output=True,
                    check=False,
                )
        if not args.no_rapidocr:
            engines["local"] = local_readings(inputs, ROOT)
        engines["local-tess"] = local_readings(inputs, ROOT, tesseract_lines=True)
        engines["tesseract"] = tesseract_readings(inputs)
    report(inputs, engines)


if __name__ == "__main__":
    main()
