"""`ocrflux convert`'s inputs: files, folders and globs, and the names their results get."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from ocrflux.cli.inputs import InputError, find_documents


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.7\n")


def layout(arguments: list[str], outdir: Path = Path("out")) -> dict[str, str]:
    return {d.orig_path: d.markdown_path(outdir).as_posix() for d in find_documents(arguments)}


def test_a_folder_is_searched_recursively_and_keeps_its_subfolders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "in/a.pdf", "in/sub/a.pdf", "in/sub/deeper/scan.PNG", "in/notes.txt",
          "in/.hidden/x.pdf", "in/sub/.x.pdf")  # fmt: skip
    assert layout(["in"]) == {
        "in/a.pdf": "out/a/a.md",
        "in/sub/a.pdf": "out/sub/a/a.md",  # same stem, other folder: no overwrite
        "in/sub/deeper/scan.PNG": "out/sub/deeper/scan/scan.md",
    }


def test_a_file_gets_the_toolkits_layout_and_keeps_dots_in_its_name(tmp_path: Path) -> None:
    touch(tmp_path, "report.v2.pdf", "notes.txt")
    documents = find_documents([str(tmp_path / "report.v2.pdf"), str(tmp_path / "notes.txt")])
    assert [(d.folder, d.name) for d in documents] == [
        (PurePath("report.v2"), "report.v2"),  # the toolkit would write report/report.md
        (PurePath("notes"), "notes"),  # named explicitly: sent whatever its suffix
    ]


def test_same_stem_in_one_folder_keeps_the_suffix(tmp_path: Path) -> None:
    touch(tmp_path, "scan.pdf", "scan.png", "other.pdf")
    names = [d.name for d in find_documents([str(tmp_path)])]
    assert names == ["other", "scan.pdf", "scan.png"]


def test_globs_keep_the_folders_below_their_fixed_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "scans/2023/q1/a.pdf", "scans/2023/q2/a.pdf", "scans/2023/q2/b.txt")
    assert layout(["scans/2023/**/*"]) == {
        "scans/2023/q1/a.pdf": "out/q1/a/a.md",
        "scans/2023/q2/a.pdf": "out/q2/a/a.md",
    }
    assert layout(["scans/2023/q1/*.pdf"]) == {"scans/2023/q1/a.pdf": "out/a/a.md"}


def test_a_file_named_twice_is_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "in/a.pdf")
    assert layout(["in", "in/a.pdf", "./in/a.pdf"]) == {"in/a.pdf": "out/a/a.md"}


def test_different_files_that_would_share_an_output_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "x/a.pdf", "y/a.pdf")
    with pytest.raises(InputError, match=r"x/a\.pdf and y/a\.pdf would both write a/"):
        find_documents(["x/a.pdf", "y/a.pdf"])
    # Their common folder keeps them apart.
    assert layout(["."]) == {"x/a.pdf": "out/x/a/a.md", "y/a.pdf": "out/y/a/a.md"}


@pytest.mark.parametrize(
    ("argument", "says"),
    [("missing.pdf", "no such file or folder"), ("nothing/*.pdf", "nothing matches")],
)
def test_what_cannot_be_found_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argument: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=says):
        find_documents([argument])


def test_a_folder_without_documents_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no documents here")
    with pytest.raises(InputError, match="no documents found"):
        find_documents([str(tmp_path)])
