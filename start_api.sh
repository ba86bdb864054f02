#!/usr/bin/env bash
# Start the OCRFlux gateway in front of a vLLM server: validate where vLLM is, then exec
# the gateway so signals reach uvicorn directly.
set -euo pipefail

readonly PROG=${0##*/}

usage() {
	cat <<'EOF'
Usage: start_api.sh [VLLM_URL] [VLLM_PORT]
       start_api.sh --help

Run the OCRFlux gateway (python -m ocrflux.api_server) in front of vLLM.
  VLLM_URL   scheme and host of the vLLM server, no port or path
             (default: $VLLM_URL, else http://localhost)
  VLLM_PORT  port of the vLLM server, 1-65535
             (default: $VLLM_PORT, else 30024)

Environment:
  PYTHON     interpreter to run the gateway with      (python3)
  DRY_RUN    1: print the command and the effective VLLM_URL/VLLM_PORT, exit 0
  Every gateway setting (API_HOST, API_PORT, OCRFLUX_MODEL, MAX_MODEL_LEN,
  VLLM_API_KEY, API_KEYS, MAX_RETRIES, DEBUG, ...) is read from the environment
  or from a .env file in the current directory; see .env.example.

Example:
  ./start_api.sh http://gpu-server 30024
EOF
}

die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 2
}

case ${1-} in
-h | --help)
	usage
	exit 0
	;;
esac
(($# <= 2)) || die "expected at most 2 arguments (VLLM_URL VLLM_PORT), got $#"

vllm_url=${1:-${VLLM_URL:-http://localhost}}
vllm_port=${2:-${VLLM_PORT:-30024}}
python=${PYTHON:-python3}

vllm_url=${vllm_url%/}
# The gateway appends ":$VLLM_PORT" itself, so a port or path here would build a broken URL.
host_re='([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])'
if [[ ! $vllm_url =~ ^https?://${host_re}$ ]]; then
	if [[ $vllm_url =~ ^https?://${host_re}:[0-9]+$ ]]; then
		die "VLLM_URL must not contain a port, got '$vllm_url'; pass the port as VLLM_PORT (second argument)"
	fi
	die "VLLM_URL must be http(s)://host without port or path, such as http://gpu-server, got '$vllm_url'"
fi
if [[ ! $vllm_port =~ ^[1-9][0-9]{0,4}$ ]] || ((vllm_port > 65535)); then
	die "VLLM_PORT must be an integer port in 1-65535, got '$vllm_port'"
fi
case ${DRY_RUN:-0} in
1 | true | yes) dry_run=true ;;
0 | false | no | "") dry_run=false ;;
*) die "DRY_RUN must be 1 or 0, got '$DRY_RUN'" ;;
esac

export VLLM_URL=$vllm_url VLLM_PORT=$vllm_port
# Lets `python -m ocrflux.api_server` work from a checkout without installing the package,
# while the current directory (and so its .env) stays the caller's.
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"

cmd=("$python" -m ocrflux.api_server)
printf 'VLLM_URL=%s\nVLLM_PORT=%s\n+ %s\n' "$VLLM_URL" "$VLLM_PORT" "${cmd[*]}"
if [[ $dry_run == true ]]; then
	exit 0
fi
command -v "$python" >/dev/null 2>&1 || die "PYTHON '$python' is not an executable on PATH"
exec "${cmd[@]}"
