"""The entry point (ocrflux.api_server): the start-up warning for a gateway open to the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocrflux import api_server
from ocrflux.http import server
from ocrflux.settings import Settings

WARNING = (
    "the gateway listens on {host} with no API_KEYS: anyone who can reach port 8000 can use "
    "it; set API_HOST=127.0.0.1 to serve this machine only, or API_KEYS to require a key"
)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.example", "[::]"])
def test_an_open_address_without_keys_is_named(host: str) -> None:
    assert api_server.exposure_warning(Settings(api_host=host)) == WARNING.format(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"])
def test_loopback_is_quiet(host: str) -> None:
    assert api_server.exposure_warning(Settings(api_host=host)) is None


def test_keys_make_it_quiet() -> None:
    assert api_server.exposure_warning(Settings(api_host="0.0.0.0", api_keys="k")) is None


def run_main(monkeypatch: pytest.MonkeyPatch, cwd: str = "/", **env: str) -> None:
    for name in ("API_HOST", "API_KEYS", "API_PORT", "DEBUG", "LOG_FORMAT"):
        monkeypatch.setenv(name, "")  # restored after the test: main() writes two of them
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(cwd)  # "/": no .env file
    monkeypatch.setattr(server.GatewayServer, "run", lambda self: None)  # nothing listens
    api_server.main()


def test_start_up_logs_one_warning_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    run_main(monkeypatch)  # the defaults: 0.0.0.0, no keys
    lines = [line for line in capfd.readouterr().err.splitlines() if "API_KEYS" in line]
    assert len(lines) == 1
    assert " WARNING ocrflux " in lines[0]
    assert lines[0].endswith(WARNING.format(host="0.0.0.0"))


def test_start_up_on_loopback_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    run_main(monkeypatch, API_HOST="127.0.0.1")
    assert "API_KEYS" not in capfd.readouterr().err


def test_the_workers_get_the_log_settings_a_dot_env_gave(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Render workers read DEBUG and LOG_FORMAT from the environment (not Settings)."""
    (tmp_path / ".env").write_text("DEBUG=yes\nLOG_FORMAT=json\nAPI_HOST=127.0.0.1\n")
    run_main(monkeypatch, cwd=str(tmp_path))
    assert (os.environ["DEBUG"], os.environ["LOG_FORMAT"]) == ("true", "json")
