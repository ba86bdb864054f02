"""Results on disk: whole files only, and a JSONL that keeps earlier runs' lines."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ocrflux.cli import outputs
from ocrflux.cli.outputs import JsonlFile, jsonl_record, write_atomic


def test_write_atomic_creates_folders_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "doc.md"
    write_atomic(target, "# Title\n\nδ text")
    assert target.read_text(encoding="utf-8") == "# Title\n\nδ text"
    assert sorted(p.name for p in target.parent.iterdir()) == ["doc.md"]


def test_a_write_that_fails_midway_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "doc.md"
    target.write_text("old")

    def interrupted(source: str, destination: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.md"]


def test_jsonl_record_has_the_toolkits_fields_in_order() -> None:
    answer = {"num_pages": 2, "document_text": "a\n\nb", "page_texts": {"0": "a", "1": "b"},
              "fallback_pages": [], "pages": [], "model": "m", "usage": {}}  # fmt: skip
    record = jsonl_record("in/x.pdf", answer)
    assert list(record) == list(outputs.JSONL_FIELDS)
    assert record["orig_path"] == "in/x.pdf" and record["page_texts"] == {"0": "a", "1": "b"}


def test_jsonl_keeps_earlier_lines_and_replaces_those_converted_again(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(
        b'{"orig_path": "a.pdf", "document_text": "old a"}\n'
        b"not json, kept as it is\n"
        b'{"orig_path": "b.pdf", "document_text": "old b"}\n'
    )
    jsonl = JsonlFile(path)
    assert jsonl.has("a.pdf") and jsonl.has("b.pdf") and not jsonl.has("c.pdf")
    jsonl.open(replacing={"a.pdf", "c.pdf"})
    jsonl.add({"orig_path": "a.pdf", "document_text": "new a"})
    # Until close() the old file is untouched: an interrupted run never leaves half of one.
    assert b"old a" in path.read_bytes()
    jsonl.close()
    lines = path.read_bytes().splitlines()
    assert lines[0] == b"not json, kept as it is"  # in its place; a.pdf's old line is gone
    records = [orjson.loads(line) for line in lines if line.startswith(b"{")]
    assert [(r["orig_path"], r["document_text"]) for r in records] == [
        ("b.pdf", "old b"),
        ("a.pdf", "new a"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]
