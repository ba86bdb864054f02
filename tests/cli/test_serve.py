"""`ocrflux serve`: the gateway with every setting as an option, made from `Settings` itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from ocrflux.cli.main import cli
from ocrflux.cli.serve import serve_command
from ocrflux.settings import Settings
from tests.cli.corpus import cli_env
from tests.support import FakeVLLMProcess, Process, free_port, wait_for


def test_every_setting_is_an_option_with_its_variable_and_default() -> None:
    options = {p.name: p for p in serve_command().params}
    assert set(options) == set(Settings.model_fields)
    assert options["web_ui"].opts == ["--web-ui"] and options["web_ui"].secondary_opts == [
        "--no-web-ui"
    ]
    help_text = CliRunner().invoke(cli, ["serve", "--help"], terminal_width=200).output
    assert "--api-port API_PORT" in help_text and "default: 8000]" in help_text
    assert "[PAGE_MAX_TOKENS; default: unset]" in help_text
    assert "--prompt-mode [ocrflux|passthrough]" in help_text


def test_serve_runs_the_gateway_with_the_options_given(
    fake: FakeVLLMProcess, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in cli_env().items() if not k.startswith(("API_", "VLLM_", "WEB_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", "serve", "--api-host", "127.0.0.1", "--api-port",
         str(port), "--vllm-url", "http://127.0.0.1", "--vllm-port", str(fake.port),
         "--health-check-interval", "0", "--no-web-ui", "--api-keys", "k1,k2"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    gateway = Process(proc, f"http://127.0.0.1:{port}", port)
    try:
        wait_for(f"{gateway.url}/health", proc)
        assert httpx.get(f"{gateway.url}/", timeout=5).status_code == 404  # --no-web-ui
        models = httpx.get(f"{gateway.url}/v1/models", timeout=5)
        assert models.status_code == 401  # --api-keys
        keyed = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": "Bearer k2"})
        assert keyed.json()["data"][0]["id"] == "ChatDOC/OCRFlux-3B"
    finally:
        gateway.stop()


def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "serve", "--api-port", "abc"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ocrflux: invalid API_PORT='abc'" in result.stderr
