"""Input files are checked line by line with OpenAI's rules, a chunk at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrflux.jobs.records import LineSpec, ValidationErrors
from ocrflux.jobs.storage import LocalFileStorage
from ocrflux.jobs.validate import CHUNK_LINES, InputScanner

OCR = "/v1/ocr"
BODY = {"document": {"type": "document_url", "document_url": "https://example.com/a.pdf"}}


def line(custom_id: str = "a", **fields: object) -> str:
    data = {"custom_id": custom_id, "method": "POST", "url": OCR, "body": BODY, **fields}
    return json.dumps({k: v for k, v in data.items() if v is not None})


def scan(
    tmp_path: Path, *files: str, strict: bool = True, max_lines: int = 100, max_line: int = 4096
) -> tuple[list[LineSpec], ValidationErrors, InputScanner]:
    storage = LocalFileStorage(str(tmp_path))
    keys = []
    for n, text in enumerate(files):
        (tmp_path / "files" / f"k{n}").write_text(text)
        keys.append(f"k{n}")
    errors = ValidationErrors(limit=3)
    scanner = InputScanner(
        storage, keys, endpoint=OCR, strict=strict, max_lines=max_lines,
        max_line_bytes=max_line, errors=errors,
    )  # fmt: skip
    found = [spec for chunk in scanner.chunks() for spec in chunk]
    return found, errors, scanner


def test_good_lines_are_found_where_they_are(tmp_path: Path) -> None:
    first, second = line("a"), line("b")
    text = f"{first}\n\n{second}\r\n"
    found, errors, scanner = scan(tmp_path, text)
    assert errors.count == 0 and scanner.count == 2
    assert found == [
        LineSpec(0, "a", 0, 0, len(first)),
        LineSpec(1, "b", 0, len(first) + 2, len(second)),  # the blank line skipped
    ]
    raw = (tmp_path / "files" / "k0").read_bytes()
    assert raw[found[1].offset : found[1].offset + found[1].length] == second.encode()


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("not json", "invalid_json_line", None),
        ("[1, 2]", "invalid_json_line", None),
        (line(custom_id=None), "missing_custom_id", "custom_id"),  # type: ignore[arg-type]
        (line(custom_id=7), "missing_custom_id", "custom_id"),  # type: ignore[arg-type]
        (line("x" * 513), "invalid_custom_id", "custom_id"),
        (line(method="GET"), "invalid_method", "method"),
        (line(url="/v1/chat/completions"), "mismatched_endpoint", "url"),
        (line(body=["not", "an", "object"]), "invalid_body", "body"),
        (line(body="text"), "invalid_body", "body"),
    ],
)
def test_each_rule_names_its_line(tmp_path: Path, text: str, code: str, param: str | None) -> None:
    found, errors, _ = scan(tmp_path, f"{line('ok')}\n{text}\n")
    assert [s.custom_id for s in found] == ["ok"]
    assert errors.count == 1
    assert errors.data[0]["code"] == code
    assert errors.data[0]["line"] == 2 and errors.data[0]["param"] == param


def test_mistral_lines_may_leave_out_method_and_url_but_not_get_them_wrong(tmp_path: Path) -> None:
    bare = json.dumps({"custom_id": "m", "body": BODY})
    found, errors, _ = scan(tmp_path, bare + "\n" + line("w", url="/v1/other"), strict=False)
    assert [s.custom_id for s in found] == ["m"]
    assert errors.data[0]["code"] == "mismatched_endpoint"
    _, strict_errors, _ = scan(tmp_path, bare, strict=True)
    assert strict_errors.data[0]["code"] == "invalid_method"


def test_a_few_errors_are_listed_and_the_rest_counted(tmp_path: Path) -> None:
    _, errors, _ = scan(tmp_path, "\n".join(["{bad"] * 7))
    summary = errors.summary()
    assert errors.count == 7 and len(summary) == 4
    assert [e["line"] for e in summary[:3]] == [1, 2, 3]
    assert summary[3]["code"] == "more_errors" and summary[3]["message"].startswith("4 more lines")


def test_a_line_over_the_limit_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    huge = line("big", body={"document": {"type": "document_url", "document_url": "x" * 10_000}})
    found, errors, _ = scan(tmp_path, f"{huge}\n{line('after')}", max_line=1000)
    assert [s.custom_id for s in found] == ["after"]  # the next line is still found
    assert found[0].offset == len(huge) + 1
    assert errors.data[0]["code"] == "line_too_large" and errors.data[0]["line"] == 1


def test_too_many_lines_stop_the_scan(tmp_path: Path) -> None:
    found, errors, _ = scan(tmp_path, "\n".join(line(f"r{n}") for n in range(6)), max_lines=4)
    assert len(found) == 4
    assert errors.data[0]["code"] == "too_many_requests" and errors.data[0]["line"] == 5


def test_lines_of_several_files_are_numbered_in_order(tmp_path: Path) -> None:
    found, errors, _ = scan(tmp_path, line("a") + "\n" + line("b"), line("c"))
    assert errors.count == 0
    assert [(s.line_no, s.custom_id, s.file_index) for s in found] == [
        (0, "a", 0),
        (1, "b", 0),
        (2, "c", 1),
    ]


def test_a_big_file_comes_in_chunks(tmp_path: Path) -> None:
    text = "\n".join(line(f"r{n}") for n in range(CHUNK_LINES * 2 + 3))
    _, _, scanner = scan(tmp_path, "", max_lines=10_000)
    (tmp_path / "files" / "k0").write_text(text)
    sizes = [len(chunk) for chunk in scanner.chunks()]
    assert sizes == [CHUNK_LINES, CHUNK_LINES, 3]


def test_errors_of_several_files_are_listed_in_file_order_and_say_which_file(
    tmp_path: Path,
) -> None:
    _, errors, _ = scan(tmp_path, f"{line('a')}\n{line('b')}\n{{bad", "{bad\n" + line("c"))
    assert [(e["line"], e["message"]) for e in errors.data] == [
        (3, "the line is not valid JSON (input file 1)"),
        (1, "the line is not valid JSON (input file 2)"),
    ]


def test_the_first_errors_by_place_are_kept_whenever_they_are_found() -> None:
    errors = ValidationErrors(limit=3)
    for file, at in ((0, 5), (1, 1), (0, 7), (0, 2), (0, 9), (0, 1)):
        errors.add("x", f"{file}:{at}", line=at, file=file)
    assert [e["message"] for e in errors.data] == ["0:1", "0:2", "0:5"]
    assert errors.count == 6 and errors.summary()[-1]["message"].startswith("3 more lines")
