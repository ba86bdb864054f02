"""`ocrflux serve`: `python -m ocrflux.api_server`, with every setting also an option.

The options are made from `Settings` itself (name, description, default), so they cannot drift
from it: an option given becomes its environment variable (`--api-port 9000` is
`API_PORT=9000`) and the gateway reads and validates it as usual, a bad value stopping
start-up with the same one-line message.
"""

from __future__ import annotations

import os
from typing import Any, Literal, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from ocrflux.settings import Settings


def serve_command() -> click.Command:
    params: list[click.Parameter] = [
        _option(name, field) for name, field in Settings.model_fields.items()
    ]
    return click.Command(
        "serve",
        params=params,
        callback=_serve,
        help="Run the gateway (the same as `python -m ocrflux.api_server`). Every option is "
        "also read from its environment variable or a .env file; an option wins over both.",
        short_help="Run the gateway.",
    )


def _option(name: str, field: FieldInfo) -> click.Option:
    env = name.upper()
    flag = "--" + name.replace("_", "-")
    help_text = f"{field.description} [{env}; default: {_default(field)}]"
    if "key" in name:
        help_text += " Prefer the environment: other users can read command lines."
    if field.annotation is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", name], default=None, help=help_text)
    if get_origin(field.annotation) is Literal:
        choices = click.Choice([str(choice) for choice in get_args(field.annotation)])
        return click.Option([flag, name], default=None, type=choices, help=help_text)
    return click.Option([flag, name], default=None, metavar=env, help=help_text)


def _default(field: FieldInfo) -> str:
    value = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value) or "none"
    return "unset" if value is None or value == "" else str(value)


def _serve(**values: Any) -> None:
    for name, value in values.items():
        if value is not None:
            os.environ[name.upper()] = str(value).lower() if isinstance(value, bool) else value
    from ocrflux.api_server import main  # the server's imports only when serving

    main()
