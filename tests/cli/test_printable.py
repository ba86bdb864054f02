"""Terminal escapes in file names and gateway messages are shown, never obeyed (issue 18.12):
the reporters, the summary and usage errors print them escaped."""

from __future__ import annotations

import io
from pathlib import Path, PurePath

from click.testing import CliRunner
from rich.console import Console

from ocrflux.cli.client import PageProgress
from ocrflux.cli.inputs import Document
from ocrflux.cli.main import cli
from ocrflux.cli.printable import printable
from ocrflux.cli.progress import BarReporter, LineReporter
from ocrflux.cli.report import Report, print_summary

# Set the window title, clear the screen, turn text red: a file name and a gateway message.
NAME = "in/\x1b]0;owned\x07\x1b[2Jx\x9b31m.pdf"
REASON = "bad \x1b[31mred\x1b[0m [bold]markup[/bold] \x1b]8;;http://x\x1b\\link\r\x08"
SHOWN_NAME = "in/\\x1b]0;owned\\x07\\x1b[2Jx\\x9b31m.pdf"
SHOWN_REASON = "bad \\x1b[31mred\\x1b[0m [bold]markup[/bold] \\x1b]8;;http://x\\x1b\\link\\r\\x08"


def document() -> Document:
    return Document(Path(NAME), PurePath("x"), "x")


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=400, color_system="standard"), out


def assert_no_hostile_codes(text: str, live: bool = False) -> None:
    codes = ["\x1b]", "\x1b[2J", "\x1b[31mred", "\x9b", "\x07", "\x08"]
    for code in codes if live else [*codes, "\r"]:  # rich's live display draws with \r
        assert code not in text, (code, text)


def test_plain_lines_escape_names_and_reasons() -> None:
    out_console, out = console(terminal=False)
    reporter = LineReporter(out_console)
    reporter.begin(1, 0)
    reporter.started(document())
    reporter.progress(document(), PageProgress(0, 1, 1, False))
    reporter.progress(document(), None)
    reporter.failed(document(), REASON)
    text = out.getvalue()
    assert_no_hostile_codes(text)
    assert f"[1/1] FAILED {SHOWN_NAME}: {SHOWN_REASON}" in text
    assert f"{SHOWN_NAME}: page 1/1" in text


def test_bars_escape_names_and_reasons_and_markup() -> None:
    out_console, out = console(terminal=True)
    reporter = BarReporter(out_console)
    reporter.begin(2, 0)
    reporter.started(document())
    reporter.progress(document(), None)
    reporter.failed(document(), REASON)
    reporter.end()
    text = out.getvalue()
    assert_no_hostile_codes(text, live=True)
    assert f"{SHOWN_NAME}: {SHOWN_REASON}" in text  # the markup shown as typed, too


def test_the_summary_escapes_names_and_reasons() -> None:
    for terminal in (False, True):
        out_console, out = console(terminal)
        report = Report(total=2, failed=[(document(), REASON)], partial=[(document(), [1])])
        report.stopped = f"cannot reach {REASON}"
        print_summary(report, out_console)
        text = out.getvalue()
        assert_no_hostile_codes(text)
        assert f"stopped: cannot reach {SHOWN_REASON}" in text


def test_usage_errors_escape_the_names_they_quote(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "\x1b]0;t\x07missing.pdf")])
    assert result.exit_code == 2
    assert_no_hostile_codes(result.output)
    assert "\\x1b]0;t\\x07missing.pdf" in result.output


def test_printable_writes_controls_out_and_leaves_the_rest() -> None:
    assert printable("a\x1b[31mb\tc\nd\re\x00f\x7fg\x85h\x9bi") == (
        "a\\x1b[31mb\\tc\\nd\\re\\x00f\\x7fg\\x85h\\x9bi"
    )
    assert printable("evil\u202egnp.pdf \u2066x\u2069") == "evil\\u202egnp.pdf \\u2066x\\u2069"
    assert printable("résumé 報告 📄 [b] \\x") == "résumé 報告 📄 [b] \\x"
