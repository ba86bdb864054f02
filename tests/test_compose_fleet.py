"""docker-compose.fleet.yml: two gateways sharing a PostgreSQL jobs database and a DATA_DIR
volume, in front of the two vLLM replicas of docker-compose.replicas.yml."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from ocrflux.jobs.store import connect, database_url
from ocrflux.settings import Settings
from tests.deploy_support import (
    ROOT,
    dockerfile_instructions,
    final_stage,
    interpolate,
    referenced_variables,
)
from tests.postgres import postgres_server
from tests.test_compose import (
    DOCKERFILE_TEXT,
    ENV_EXAMPLE,
    SECRET_NAME,
    check_with_cli,
    schema_validator,
)
from tests.test_compose_replicas import replicas

FLEET_TEXT = (ROOT / "docker-compose.fleet.yml").read_text()
GATEWAYS = ("api-0", "api-1")


def fleet(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(FLEET_TEXT), env or {})


def gateway_settings(service: dict[str, Any]) -> Settings:
    """What the gateway in `service` runs with (its environment; no .env)."""
    names = set(Settings.model_fields)
    values = {k.lower(): v for k, v in service["environment"].items() if k.lower() in names}
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("env", [{}, ENV_EXAMPLE], ids=["no-env", "env-example"])
def test_the_file_matches_the_compose_spec(env: dict[str, str]) -> None:
    errors = list(schema_validator().iter_errors(fleet(env)))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_cli_validation_when_available() -> None:
    check_with_cli("docker-compose.fleet.yml")


def test_the_fleet_is_a_database_two_replicas_and_two_gateways() -> None:
    assert set(fleet()["services"]) == {"postgres", "vllm-0", "vllm-1", *GATEWAYS}
    assert set(fleet()["volumes"]) == {"hf-cache", "jobs-data", "pg-data"}


def test_the_replicas_are_those_of_the_replicas_file() -> None:
    for name in ("vllm-0", "vllm-1"):
        assert fleet(ENV_EXAMPLE)["services"][name] == replicas(ENV_EXAMPLE)["services"][name]


def test_every_gateway_shares_the_jobs_database_and_the_data_volume() -> None:
    services = fleet(ENV_EXAMPLE)["services"]
    single = replicas(ENV_EXAMPLE)["services"]["api"]
    seen = []
    for name in GATEWAYS:
        api = services[name]
        settings = gateway_settings(api)
        assert settings.upstream_urls == ["http://vllm-0:30024", "http://vllm-1:30024"]
        assert database_url(settings.jobs_database_url, settings.data_dir) == (
            "postgresql+psycopg://ocrflux@postgres:5432/ocrflux"
        )
        assert settings.data_dir == "/data" and "jobs-data:/data" in api["volumes"]
        assert settings.batch_worker  # each runs batch lines
        assert api["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert set(api["depends_on"]) == {"postgres", "vllm-0", "vllm-1"}
        for key in ("build", "image", "env_file", "stop_grace_period", "restart", "logging"):
            assert api[key] == single[key], (name, key)
        seen.append({k: v for k, v in api.items() if k != "ports"})
    assert seen[0] == seen[1], "the gateways differ only in their published port"


def test_the_database_password_comes_from_env_only_and_stays_out_of_the_url() -> None:
    raw = yaml.safe_load(FLEET_TEXT)
    postgres = raw["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-}"
    for name in GATEWAYS:
        environment = fleet({"POSTGRES_PASSWORD": "s3cr@t/:x"})["services"][name]["environment"]
        assert environment["PGPASSWORD"] == "s3cr@t/:x"  # libpq's own variable
        assert "s3cr" not in environment["JOBS_DATABASE_URL"]
    for name, service in raw["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) or key == "PGPASSWORD":
                assert re.fullmatch(r"\$\{[A-Z_]+:-\}", str(value)), f"{name}.{key}={value}"
    assert ENV_EXAMPLE["POSTGRES_PASSWORD"] == ""


def test_postgres_is_private_durable_and_checked_before_the_gateways_start() -> None:
    postgres = fleet()["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "ports" not in postgres and postgres["expose"] == ["5432"]
    assert "pg-data:/var/lib/postgresql/data" in postgres["volumes"]
    env = postgres["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == ("ocrflux", "ocrflux")
    check = postgres["healthcheck"]["test"]
    assert check[:2] == ["CMD", "pg_isready"] and "ocrflux" in check


def test_the_gateways_publish_on_loopback_by_default_each_on_its_own_port() -> None:
    services = fleet()["services"]
    assert services["api-0"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["api-1"]["ports"] == ["127.0.0.1:8001:8000"]
    opened = fleet({"API_PUBLISH": "0.0.0.0:8000", "API_PUBLISH_SECOND": "0.0.0.0:8001"})
    assert opened["services"]["api-1"]["ports"] == ["0.0.0.0:8001:8000"]


def test_every_variable_it_reads_is_documented() -> None:
    assert referenced_variables(FLEET_TEXT) <= set(ENV_EXAMPLE)


def test_the_image_keeps_data_dir_on_a_volume_the_gateway_may_write() -> None:
    final = final_stage(dockerfile_instructions(DOCKERFILE_TEXT))
    assert ("VOLUME", '["/data"]') in final
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert re.search(r"\bDATA_DIR=/data\b", env)
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    assert "mkdir /data && chown 10001:10001 /data" in runs  # before VOLUME, or it is lost
    keywords = [keyword for keyword, _ in final]
    assert keywords.index("RUN") < keywords.index("VOLUME")
    user = next(args for keyword, args in final if keyword == "USER")
    assert user == "10001:10001"
    # A .env made from .env.example keeps the image's DATA_DIR (a relative one would point
    # into the root-owned working directory).
    assert "DATA_DIR" not in ENV_EXAMPLE


def test_the_readme_gives_the_fleet_recipe_this_file_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f docker-compose.fleet.yml up -d" in readme
    assert "docker compose -f docker-compose.fleet.yml up -d" in FLEET_TEXT
    assert "POSTGRES_PASSWORD" in readme


async def test_the_gateway_reaches_a_password_protected_database_with_pgpassword(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateways' JOBS_DATABASE_URL has no password: libpq takes PGPASSWORD (any
    characters) for it. Against a real server that asks for one."""
    password = "s3cr@t/:x %"
    configured = fleet()["services"]["api-0"]["environment"]["JOBS_DATABASE_URL"]
    with postgres_server(password=password) as server:
        address = server.split("@", 1)[1].split("/", 1)[0]  # 127.0.0.1:PORT
        url = configured.replace("ocrflux@postgres:5432/ocrflux", f"postgres@{address}/postgres")
        assert url == f"postgresql://postgres@{address}/postgres"
        for given, works in ((password, True), ("wrong", False), (None, False)):
            if given is None:
                monkeypatch.delenv("PGPASSWORD", raising=False)
            else:
                monkeypatch.setenv("PGPASSWORD", given)
            try:
                engine = await connect(database_url(url, ""))  # migrates: a real session
            except OperationalError:
                assert not works, "refused with the right password"
            else:
                await engine.dispose()
                assert works, f"connected with PGPASSWORD={given!r}"
