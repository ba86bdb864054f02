"""`ocrflux convert`'s options, checked before anything is sent (click's test runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ocrflux.cli.main import cli


@pytest.mark.parametrize(("pages", "says"), [
    ("abc", "pages: 'abc' is not a page number or range (0-based, like \"0-5,7\")"),
    ("5-2", "pages: range 5-2 is reversed"),
    ("-1", "pages: '-1' is not a page number or range"),
    ("", 'pages is empty: give page numbers like "0-5,7" or omit it'),
])  # fmt: skip
def test_pages_are_checked_with_the_apis_parser_and_exit_2(
    tmp_path: Path, pages: str, says: str
) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    # A port nothing listens on: a run that got as far as sending would say "cannot reach".
    arguments = ["convert", str(tmp_path / "a.pdf"), "--url", "http://127.0.0.1:9", "--pages"]
    result = CliRunner().invoke(cli, [*arguments, pages])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--pages'" in result.output
    assert says in result.output
    assert "cannot reach" not in result.output


def test_good_pages_pass(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\n")
    arguments = ["convert", str(tmp_path / "a.pdf"), "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(cli, [*arguments, "--pages", " 0-2, 5 "])
    assert result.exit_code == 1, result.output  # got as far as the (absent) gateway
    assert "cannot reach the gateway at http://127.0.0.1:9" in result.output
