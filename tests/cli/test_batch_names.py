"""custom_id <-> output folder: what a batch writes where, and the ids it refuses to follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrflux.cli.batch_names import CustomIdError, custom_id, document_for
from ocrflux.cli.inputs import find_documents


def test_every_document_round_trips_through_its_custom_id(tmp_path: Path) -> None:
    for name in ("a.pdf", "sub/a.pdf", "sub/deeper/report.v2.pdf", "sub/scan.png", "sub/scan.pdf"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"%PDF")
    out = tmp_path / "out"
    documents = find_documents([str(tmp_path / "in")])
    ids = [custom_id(d) for d in documents]
    assert ids == ["a", "sub/a", "sub/scan.pdf", "sub/scan.png", "sub/deeper/report.v2"]
    for document, value in zip(documents, ids, strict=True):
        back = document_for(value, out, document.orig_path)
        assert back.markdown_path(out) == document.markdown_path(out)
        assert back.orig_path == document.orig_path
    assert document_for("sub/deeper/report.v2", out).markdown_path(out) == (
        out / "sub/deeper/report.v2/report.v2.md"
    )
    # Without the input's name (a resumed batch whose input file is gone) the id stands in.
    assert document_for("sub/a", out).orig_path == "sub/a"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "it is empty"),
        ("../escape", "'..' part"),
        ("a/../../b", "'..' part"),
        ("/etc/cron.d", "absolute path"),
        ("a//b", "empty"),
        ("./a", "'.' or '..'"),
        ("a/", "empty"),
        ("a\x00b", "NUL"),
        ("a\\..\\b", "backslash"),
        ("x" * 513, "longer than 512"),
    ],
)
def test_an_id_that_is_no_relative_folder_names_no_file(
    tmp_path: Path, value: str, says: str
) -> None:
    with pytest.raises(CustomIdError, match="names no output file") as caught:
        document_for(value, tmp_path / "out")
    assert says in str(caught.value)


def test_an_id_through_a_link_out_of_outdir_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(CustomIdError, match="outside the output folder"):
        document_for("link/a", out)


def test_escape_sequences_in_an_id_are_shown_not_sent(tmp_path: Path) -> None:
    with pytest.raises(CustomIdError) as caught:
        document_for("\x1b]0;pwned\x07/..", tmp_path)
    assert "\x1b" not in str(caught.value) and "\\x1b]0;pwned\\x07" in str(caught.value)
