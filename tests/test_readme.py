"""The README holds: its configuration table, its SDK example, its first command and curl."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from ocrflux.settings import Settings
from tests.engines.local.pages import accuracy, plain_text, tables
from tests.support import FakeVLLMProcess, Process, readme_quick_start

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


def test_the_first_command_converts_the_sample_with_no_gpu(local_gateway: Process) -> None:
    """The README's curl, run by bash against a gateway its first command started (the
    session's `local_gateway`: `OCR_BACKEND=local`, no vLLM anywhere), prints the Markdown
    the README shows."""
    setup, curl = readme_quick_start()
    assert setup.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "pip install -e '.[cpu]' && API_HOST=127.0.0.1 OCR_BACKEND=local " in setup
    assert "localhost:8000" in curl and "examples/sample.pdf" in curl
    command = curl.replace("localhost:8000", f"127.0.0.1:{local_gateway.port}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", command], cwd=README.parent, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    text = README.read_text(encoding="utf-8")
    start = text.index("```markdown\n", text.index(curl)) + len("```markdown\n")
    shown = text[start : text.index("```", start)].strip()
    # OCR may differ in a character across CPUs; the structure may not.
    assert accuracy(plain_text(shown), printed) >= 0.98
    lines = printed.splitlines()
    assert lines[0] == "# Site inspection report"
    checklist = [line for line in lines if line.startswith("[")]
    assert checklist == [
        "[√] Fire exits are clear",
        "[ ] Ladders are tagged",
        "[√] First aid kit is stocked",
    ]
    assert tables(printed) == tables(shown)


def test_the_sample_is_what_its_script_makes() -> None:
    """The committed sample is the script's page, and stays a few KB. Pixels are compared
    loosely (another FreeType or Pillow moves glyph edges); what the page says is held by the
    README's curl above."""
    script = README.parent / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (README.parent / "examples" / "sample.pdf").read_bytes()
    assert len(committed) < 16 * 1024
    made, shipped = pdf_page_pixels(module.sample_pdf()), pdf_page_pixels(committed)
    assert made.shape == shipped.shape
    assert (made != shipped).mean() < 0.005


def pdf_page_pixels(data: bytes) -> np.ndarray:
    document = pdfium.PdfDocument(data)
    try:
        assert len(document) == 1
        return np.asarray(document[0].render(scale=1).to_pil().convert("L"))
    finally:
        document.close()


def test_ci_runs_the_readmes_test_commands_verbatim() -> None:
    """Every command `.ci/run` runs after a "verbatim" comment is a README command line."""
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [ci[i + 1] for i, line in enumerate(ci) if "verbatim" in line]
    readme_lines = set(README.read_text(encoding="utf-8").splitlines())
    assert len(commands) == 3  # the fast suite, the real-vLLM suite, the load suite
    assert all(command in readme_lines for command in commands)
    assert "python -m pytest" in commands[0]


def _example(text: str, after: str) -> str:
    start = text.index("```python\n", text.index(after)) + len("```python\n")
    return text[start : text.index("```", start)]


@pytest.mark.parametrize(
    ("after", "document", "printed"),
    [
        ("The official `openai` SDK:\n\n```python\nimport base64\nimport json", "report.pdf",
         "report # Batched"),
        ("The official `mistralai` SDK, with the document uploaded first", "scan.pdf",
         "scan 2 pages"),
    ],
)  # fmt: skip
def test_the_batch_examples_run_as_written(
    ocrflux_gateway: Process,
    fake: FakeVLLMProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    after: str,
    document: str,
    printed: str,
) -> None:
    from tests.documents.pdfs import Page, make_pdf, page_json

    text = README.read_text(encoding="utf-8")
    (tmp_path / document).write_bytes(make_pdf([Page(612, 792, ("One.",))] * 2))
    fake.control(answer=page_json("# Batched\n\nText."))
    monkeypatch.chdir(tmp_path)
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(min(s, 0.2)))  # poll faster
    example = _example(text, after).replace("localhost:8000", f"127.0.0.1:{ocrflux_gateway.port}")
    exec(example, {})
    out = capsys.readouterr().out
    assert printed in out, out
    assert out.startswith(("completed", "SUCCESS")), out
