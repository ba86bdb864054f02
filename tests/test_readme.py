"""The README's configuration table lists every setting with its true default."""

from __future__ import annotations

import re
from pathlib import Path

from ocrflux.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|", re.MULTILINE)


def shown_default(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.default if field.default_factory is None else field.default_factory()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        value = ",".join(value)
    return str(value) or '""'


def test_configuration_table_is_complete_and_true() -> None:
    rows = dict(ROW.findall(README.read_text(encoding="utf-8")))
    expected = {name.upper(): shown_default(name) for name in Settings.model_fields}
    assert rows == expected
