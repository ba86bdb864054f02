"""Helpers for the deployment tests: run the start scripts, fake their executables, read
the Dockerfile, .dockerignore and the compose file the way Docker would."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VLLM_SCRIPT = ROOT / "start_vllm_server.sh"
API_SCRIPT = ROOT / "start_api.sh"
FAKE_VLLM_SERVER = ROOT / "tests" / "fake_vllm.py"

# Only these reach the scripts, so a knob exported in the developer's or CI's shell
# (MAX_NUM_SEQS, VLLM_PORT, ...) cannot change what the tests see.
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def clean_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in _PASSED_THROUGH}
    return {**base, **env}


def run_script(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def printed_command(stdout: str) -> list[str]:
    """The argv of the `+ ...` line a start script prints before it execs."""
    lines = [line for line in stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, f"expected one '+ command' line, got: {stdout!r}"
    return shlex.split(lines[0][2:])


def write_recorder(directory: Path, name: str, serve_fake_vllm: bool = False) -> Path:
    """An executable `name` that records its argv, pid and environment as JSON in
    $RECORD_FILE; with `serve_fake_vllm`, it then becomes tests/fake_vllm.py (same pid)
    listening where `vllm serve` was told to."""
    path = directory / name
    path.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, os, sys
            with open(os.environ["RECORD_FILE"], "w") as f:
                json.dump({{"argv": sys.argv[1:], "pid": os.getpid(), "env": dict(os.environ)}}, f)
            if {serve_fake_vllm!r}:
                argv = sys.argv[1:]
                value = lambda flag: argv[argv.index(flag) + 1]
                os.execv(sys.executable, [sys.executable, {str(FAKE_VLLM_SERVER)!r},
                         "--host", value("--host"), "--port", value("--port"),
                         "--served-model-name", value("--served-model-name")])
            """
        )
    )
    path.chmod(0o755)
    return path


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# --- compose -----------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def referenced_variables(text: str) -> set[str]:
    return {match.group(1) for match in _VARIABLE.finditer(text)}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation for the forms this repo uses: ${V}, ${V:-default}, ${V-default}."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if operator == ":-":
            return env.get(name) or default
        if operator == "-":
            return env.get(name, default)
        return env.get(name, "")

    result = _VARIABLE.sub(substitute, value.replace("$$", "\0"))
    assert "${" not in result, f"unsupported interpolation in {value!r}"
    return result.replace("\0", "$")


def duration_seconds(text: str) -> float:
    """A compose duration such as 1m30s or 20m, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    start = arguments.index("[")
    parsed = json.loads(arguments[start:])
    assert isinstance(parsed, list)
    return [str(item) for item in parsed]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` (or a parent directory of it) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        options = {pattern}
        if pattern.startswith("**/"):
            options.add(pattern[3:])
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in options):
            excluded = not negate
    return excluded


def dockerignore_patterns(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
