"""Entry point: `python -m ocrflux.api_server` reads the settings and runs uvicorn.

The top level imports nothing but the standard library: worker processes started with the
"spawn" method (the local OCR engine's, the PDF renderer's) re-import the main module, and
each would otherwise load uvicorn, FastAPI and the whole gateway for nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocrflux.settings import Settings

SECRET_SETTINGS = {"api_keys", "vllm_api_key", "metrics_api_key", "webhook_secret"}


def load_settings() -> Settings:
    """Settings from the environment; on a bad value, one line per variable and exit 2."""
    from pydantic import ValidationError

    from ocrflux.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"][:1]) or "settings"
            shown = "<hidden>" if name in SECRET_SETTINGS else repr(error.get("input"))
            message = error["msg"].removeprefix("Value error, ")
            print(f"ocrflux: invalid {name.upper()}={shown}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def exposure_warning(settings: Settings) -> str | None:
    """The start-up warning for a gateway anyone on the network may use: a non-loopback
    API_HOST (the default 0.0.0.0, right in a container) with no API_KEYS."""
    if settings.api_keys or _is_loopback(settings.api_host):
        return None
    return (
        f"the gateway listens on {settings.api_host} with no API_KEYS: anyone who can reach "
        f"port {settings.api_port} can use it; set API_HOST=127.0.0.1 to serve this machine "
        "only, or API_KEYS to require a key"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def main() -> None:
    settings = load_settings()
    # Spawned workers (the PDF renderer's) log as the gateway without loading its settings:
    # they read these two from the environment, which a .env file does not reach.
    os.environ["DEBUG"] = "true" if settings.debug else "false"
    os.environ["LOG_FORMAT"] = settings.log_format
    from ocrflux.engines.factory import missing_local_engine

    missing = missing_local_engine(settings)
    if missing is not None:
        print(f"ocrflux: {missing}", file=sys.stderr)
        raise SystemExit(2)

    from ocrflux.app import create_app
    from ocrflux.http.server import GatewayServer, server_config
    from ocrflux.observability import configure_logging

    configure_logging(settings.debug, settings.log_format)
    warning = exposure_warning(settings)
    if warning is not None:
        logging.getLogger("ocrflux").warning(warning)
    app = create_app(settings)
    GatewayServer(server_config(app, settings), app).run()


if __name__ == "__main__":
    main()
