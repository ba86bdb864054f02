"""Entry point: `python -m ocrflux.api_server` reads the settings and runs uvicorn."""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from ocrflux.app import create_app
from ocrflux.http_limits import limited_protocol
from ocrflux.observability import configure_logging
from ocrflux.settings import Settings

SECRET_SETTINGS = {"api_keys", "vllm_api_key"}


def load_settings() -> Settings:
    """Settings from the environment; on a bad value, one line per variable and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"][:1]) or "settings"
            shown = "<hidden>" if name in SECRET_SETTINGS else repr(error.get("input"))
            message = error["msg"].removeprefix("Value error, ")
            print(f"ocrflux: invalid {name.upper()}={shown}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def main() -> None:
    settings = load_settings()
    configure_logging(settings.debug)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        log_level="debug" if settings.debug else "info",
        http=limited_protocol(settings),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
