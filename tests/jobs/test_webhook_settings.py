"""The webhook settings refuse what could never be signed or sent, without showing the secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ocrflux.api_server import load_settings
from ocrflux.settings import Settings
from tests.jobs.test_webhooks import SECRET


def test_a_url_needs_a_secret() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_URL needs WEBHOOK_SECRET"):
        Settings(webhook_url="https://hooks.example.com/ocr")


@pytest.mark.parametrize("secret", ["not-whsec-prefixed", "whsec_", "whsec_!!not base64!!"])
def test_a_secret_must_be_whsec_base64(secret: str) -> None:
    with pytest.raises(ValidationError, match="must be whsec_ followed by base64"):
        Settings(webhook_url="https://hooks.example.com/ocr", webhook_secret=secret)


def test_start_up_names_a_bad_secret_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOOK_URL", "https://hooks.example.com/ocr")
    monkeypatch.setenv("WEBHOOK_SECRET", "sk-very-secret-value")
    with pytest.raises(SystemExit):
        load_settings()
    printed = capsys.readouterr().err
    assert "invalid WEBHOOK_SECRET=<hidden>: must be whsec_ followed by base64" in printed
    assert "sk-very-secret-value" not in printed


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/", "hooks.example.com/ocr", "http://"])
def test_a_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match=r"must be an http\(s\)://host"):
        Settings(webhook_url=url, webhook_secret=SECRET)


def test_allowed_hosts_are_a_comma_list() -> None:
    settings = Settings(
        webhook_url="http://receiver:8080/hooks",
        webhook_secret=SECRET,
        webhook_allowed_hosts="Receiver, 10.0.0.0/8,[::1]",
    )
    assert settings.webhook_allowed_hosts == ["receiver", "10.0.0.0/8", "::1"]
