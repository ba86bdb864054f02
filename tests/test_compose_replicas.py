"""docker-compose.replicas.yml (two vLLM replicas, N gateways behind nginx) and its nginx.conf."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from ocrflux.settings import Settings
from tests.deploy_support import ROOT, interpolate, referenced_variables
from tests.test_compose import ENV_EXAMPLE, check_with_cli, compose, schema_validator

REPLICAS_TEXT = (ROOT / "docker-compose.replicas.yml").read_text()
NGINX_TEXT = (ROOT / "deploy" / "nginx.conf").read_text()


def replicas(env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(REPLICAS_TEXT), env or {})


@pytest.mark.parametrize("env", [{}, ENV_EXAMPLE], ids=["no-env", "env-example"])
def test_the_file_matches_the_compose_spec(env: dict[str, str]) -> None:
    errors = list(schema_validator().iter_errors(replicas(env)))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_cli_validation_when_available() -> None:
    check_with_cli("docker-compose.replicas.yml")


def test_each_replica_is_the_main_files_vllm_on_a_gpu_of_its_own() -> None:
    services = replicas()["services"]
    single = compose()["services"]["vllm"]
    gpus = []
    for name in ("vllm-0", "vllm-1"):
        vllm = services[name]
        for key in ("image", "entrypoint", "command", "volumes", "ipc", "healthcheck"):
            assert vllm[key] == single[key], (name, key)
        # The replicas run one GPU each; the parallel sizes belong to the one-server stack.
        expected_env = {
            k: v for k, v in single["environment"].items() if not k.endswith("PARALLEL_SIZE")
        }
        assert vllm["environment"] == expected_env, name
        (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        gpus += device["device_ids"]
    assert gpus == ["0", "1"]


def test_every_gateway_balances_both_replicas() -> None:
    api = replicas(ENV_EXAMPLE)["services"]["api"]
    urls = api["environment"]["VLLM_URLS"]
    settings = Settings(_env_file=None, vllm_urls=urls)  # type: ignore[call-arg]
    assert settings.upstream_urls == ["http://vllm-0:30024", "http://vllm-1:30024"]
    assert set(api["depends_on"]) == {"vllm-0", "vllm-1"}
    # Scaled gateways cannot share a host port: only the proxy publishes one.
    assert "ports" not in api and api["expose"] == ["8000"]
    grace = int(api["stop_grace_period"].removesuffix("s"))
    assert grace > Settings().shutdown_grace  # Docker's SIGKILL comes after the drain


def test_the_proxy_publishes_on_loopback_by_default() -> None:
    assert replicas()["services"]["proxy"]["ports"] == ["127.0.0.1:8000:8000"]


def test_the_proxy_publishes_the_port_and_reaches_every_gateway() -> None:
    proxy = replicas({"API_PUBLISH": "127.0.0.1:9000"})["services"]["proxy"]
    assert proxy["ports"] == ["127.0.0.1:9000:8000"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert re.search(r"server api:8000 resolve;", NGINX_TEXT)
    assert "resolver 127.0.0.11" in NGINX_TEXT  # Docker's DNS: every scaled container
    assert re.search(r"listen 8000;", NGINX_TEXT)
    assert "proxy_buffering off;" in NGINX_TEXT  # streams are not held back
    body = re.search(r"client_max_body_size (\d+)m;", NGINX_TEXT)
    assert body and int(body.group(1)) * 2**20 >= Settings().max_request_bytes
    read = re.search(r"proxy_read_timeout (\d+)s;", NGINX_TEXT)
    assert read and int(read.group(1)) > Settings().total_timeout


def test_every_variable_it_reads_is_documented() -> None:
    assert referenced_variables(REPLICAS_TEXT) <= set(ENV_EXAMPLE)
