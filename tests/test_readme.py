"""The README's configuration table lists every setting with its true default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from ocrflux.settings import Settings
from tests.support import FakeVLLMProcess, Process

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|", re.MULTILINE)


def shown_default(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.default if field.default_factory is None else field.default_factory()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        value = ",".join(value)
    if value is None:  # an optional setting, unset by default
        value = ""
    return str(value) or '""'


def test_configuration_table_is_complete_and_true() -> None:
    rows = dict(ROW.findall(README.read_text(encoding="utf-8")))
    expected = {name.upper(): shown_default(name) for name in Settings.model_fields}
    assert rows == expected


def test_the_sdk_example_runs_as_written(
    ocrflux_gateway: Process,
    fake: FakeVLLMProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("The official `openai` SDK:")) + len("```python\n")
    example = text[start : text.index("```", start)]
    Image.new("RGB", (600, 800), "white").save(tmp_path / "page.png")
    answer = (
        '{"primary_language": "en", "is_rotation_valid": true, "rotation_correction": 0, '
        '"is_table": false, "is_diagram": false, "natural_text": "# Title\\n\\nBody."}'
    )
    fake.control(answer=answer)
    monkeypatch.chdir(tmp_path)
    exec(example.replace("http://localhost:8000", ocrflux_gateway.url), {})
    printed = capsys.readouterr().out
    assert printed.count("# Title\n\nBody.") == 2  # once whole, once streamed
    assert "CompletionUsage(" in printed
