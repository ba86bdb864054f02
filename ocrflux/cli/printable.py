"""Text from outside (file names, the gateway's messages) made safe to print on a terminal.

A file name or an error message may carry escape sequences that set the window title, clear
the screen, forge colours or hyperlinks; they are shown (`\\x1b`), never sent to the terminal.
Rich markup is a separate matter: `rich.markup.escape` the result where markup is on.
"""

from __future__ import annotations

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# C0 controls, DEL and C1 controls (0x9b alone starts a sequence on many terminals), and the
# bidirectional overrides and isolates that make a name read in another order than it is.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F)]
_CONTROLS += [*range(0x2066, 0x206A)]
_TABLE = {
    code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _CONTROLS
}


def printable(text: str) -> str:
    """`text` with every control character written out as an escape."""
    return text.translate(_TABLE)
