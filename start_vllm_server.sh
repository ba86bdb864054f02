#!/usr/bin/env bash
# Start vLLM serving OCRFlux-3B for the gateway: validate every knob, print the
# exact command, then exec it so signals (docker stop, Ctrl-C) reach vLLM itself.
set -euo pipefail

readonly PROG=${0##*/}

usage() {
	cat <<'EOF'
Usage: start_vllm_server.sh [MODEL] [PORT]
       start_vllm_server.sh --help

Run `vllm serve MODEL` on PORT for the OCRFlux gateway.
  MODEL  Hugging Face id or local path          (default: ChatDOC/OCRFlux-3B)
  PORT   port of vLLM's OpenAI-compatible API   (default: 30024)

Every other knob is an environment variable (empty = default):
  HOST                     address to bind                       (0.0.0.0)
  SERVED_MODEL_NAME        name clients ask for; the gateway's OCRFLUX_MODEL
                           must equal it                         (MODEL)
  MAX_MODEL_LEN            context length in tokens, prompt + output; keep
                           the gateway's MAX_MODEL_LEN equal     (8192)
  GPU_MEMORY_UTILIZATION   fraction of GPU memory vLLM may use, in (0, 1]
                                                                 (0.8)
  MAX_NUM_SEQS             sequences batched per step            (256)
  MAX_NUM_BATCHED_TOKENS   tokens batched per step               (8192)
  TENSOR_PARALLEL_SIZE     GPUs one model copy is split across   (1)
  PIPELINE_PARALLEL_SIZE   pipeline stages (GPUs or nodes)       (vLLM's: 1)
  DATA_PARALLEL_SIZE       model copies behind this one server   (vLLM's: 1)
  DTYPE                    auto, half, float16, bfloat16, float, float32
                                                                 (auto)
  QUANTIZATION             a vLLM quantization method: fp8 or
                           int8_per_channel_weight_only quantize on the
                           fly; awq, gptq, compressed-tensors need a
                           checkpoint quantized that way         (none)
  LIMIT_MM_PER_PROMPT      images per prompt: a number N, or vLLM's JSON
                           form such as {"image": 2}             (vLLM's)
  ENABLE_PREFIX_CACHING    true or false                         (vLLM's: on)
  API_KEY                  key vLLM requires on /v1; handed to vLLM as
                           VLLM_API_KEY so it stays out of `ps` and logs.
                           The gateway's VLLM_API_KEY must equal it.  (none)
  VLLM_EXTRA_ARGS          further `vllm serve` flags, appended last (so
                           they win); split at blanks, '...' or "..." keep
                           blanks (no escapes inside quotes); nothing in it
                           is expanded or run                    (none)
  DRY_RUN                  1: print the command and exit 0       (0)

Example:
  GPU_MEMORY_UTILIZATION=0.9 MAX_NUM_SEQS=128 ./start_vllm_server.sh
  TENSOR_PARALLEL_SIZE=2 DRY_RUN=1 ./start_vllm_server.sh ChatDOC/OCRFlux-3B 30024
EOF
}

die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 2
}

warn() {
	printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

# Accepted by vLLM 0.32 (vllm/model_executor/layers/quantization/__init__.py), the version
# docker-compose.yml pins. A newer method can still be passed through VLLM_EXTRA_ARGS.
readonly QUANT_METHODS=(
	auto_awq auto_gptq awq awq_marlin compressed-tensors deepseek_v4_fp8 experts_int8
	fbgemm_fp8 fp8 fp8_per_block fp8_per_channel fp8_per_tensor fp_quant gpt_oss_mxfp4
	gptq gptq_marlin humming inc int8_per_channel_weight_only modelopt modelopt_fp4
	modelopt_mixed modelopt_mxfp8 moe_wna16 mxfp4 mxfp8 nvfp4_per_token online quark
	torchao
)
# Still accepted but deprecated upstream: started, with a warning.
readonly QUANT_DEPRECATED=(fbgemm_fp8 fp_quant)
# Accepted by earlier vLLM releases, removed since: refuse now rather than after a slow start.
readonly QUANT_REMOVED=(
	aqlm bitblas bitsandbytes cpu_awq deepgemm_fp8 deepspeedfp gguf gptq_bitblas
	gptq_marlin_24 hqq ipex marlin neuron_quant petit_nvfp4 ptpc_fp8 qqq squeezellm tpu_int8
)
readonly QUANT_ALTERNATIVES="fp8, fp8_per_channel or int8_per_channel_weight_only \
(quantize OCRFlux-3B on the fly), or awq, gptq, compressed-tensors (for a checkpoint \
quantized that way)"
readonly DTYPES=(auto half float16 bfloat16 float float32)

contains() {
	local needle=$1 item
	shift
	for item in "$@"; do
		[[ $item == "$needle" ]] && return 0
	done
	return 1
}

require_positive_int() {
	[[ $2 =~ ^[1-9][0-9]{0,8}$ ]] || die "$1 must be a positive integer, got '$2'"
}

require_port() {
	if [[ ! $2 =~ ^[1-9][0-9]{0,4}$ ]] || (($2 > 65535)); then
		die "$1 must be an integer port in 1-65535, got '$2'"
	fi
}

require_fraction() {
	# (0, 1]: 1, 1.0, 0.8, .95 - never 0 or above 1.
	[[ $2 =~ ^(1(\.0+)?|0?\.[0-9]*[1-9][0-9]*)$ ]] ||
		die "$1 must be a fraction in (0, 1], such as 0.8, got '$2'"
}

require_word() {
	[[ -n $2 && ! $2 =~ [[:space:]] && $2 != -* ]] ||
		die "$1 must be non-empty, without spaces, and not start with '-', got '$2'"
}

parse_bool() {
	case ${2,,} in
	1 | true | yes | on) printf 'true' ;;
	0 | false | no | off) printf 'false' ;;
	*) die "$1 must be true or false, got '$2'" ;;
	esac
}

check_quantization() {
	local method=$1
	if contains "$method" "${QUANT_REMOVED[@]}"; then
		die "QUANTIZATION=$method is no longer supported by vLLM; use $QUANT_ALTERNATIVES, or leave QUANTIZATION empty"
	fi
	if ! contains "$method" "${QUANT_METHODS[@]}"; then
		die "QUANTIZATION=$method is not a vLLM quantization method; choose one of: ${QUANT_METHODS[*]}"
	fi
	if contains "$method" "${QUANT_DEPRECATED[@]}"; then
		warn "QUANTIZATION=$method is deprecated in vLLM and will be removed; prefer $QUANT_ALTERNATIVES"
	fi
}

# xargs splits with quotes and backslashes like a shell, but, unlike eval, never expands or
# runs anything in the value.
split_extra_args() {
	local parsed
	# The value is not echoed back: it may hold a secret such as --hf-token.
	if ! parsed=$(printf '%s' "$1" | xargs -r printf '%s\n' 2>/dev/null); then
		die "VLLM_EXTRA_ARGS cannot be split into arguments: check it for an unmatched quote"
	fi
	extra_args=()
	[[ -z $parsed ]] || mapfile -t extra_args <<<"$parsed"
}

case ${1-} in
-h | --help)
	usage
	exit 0
	;;
esac
(($# <= 2)) || die "expected at most 2 arguments (MODEL PORT), got $#; put other vLLM flags in VLLM_EXTRA_ARGS"

model=${1:-ChatDOC/OCRFlux-3B}
port=${2:-30024}
host=${HOST:-0.0.0.0}
served_model_name=${SERVED_MODEL_NAME:-$model}
max_model_len=${MAX_MODEL_LEN:-8192}
gpu_memory_utilization=${GPU_MEMORY_UTILIZATION:-0.8}
max_num_seqs=${MAX_NUM_SEQS:-256}
max_num_batched_tokens=${MAX_NUM_BATCHED_TOKENS:-8192}
tensor_parallel_size=${TENSOR_PARALLEL_SIZE:-1}
pipeline_parallel_size=${PIPELINE_PARALLEL_SIZE:-}
data_parallel_size=${DATA_PARALLEL_SIZE:-}
dtype=${DTYPE:-auto}
quantization=${QUANTIZATION:-}
limit_mm_per_prompt=${LIMIT_MM_PER_PROMPT:-}
enable_prefix_caching=${ENABLE_PREFIX_CACHING:-}
api_key=${API_KEY:-}
dry_run=$(parse_bool DRY_RUN "${DRY_RUN:-0}")

require_word MODEL "$model"
require_port PORT "$port"
require_word HOST "$host"
require_word SERVED_MODEL_NAME "$served_model_name"
require_positive_int MAX_MODEL_LEN "$max_model_len"
require_fraction GPU_MEMORY_UTILIZATION "$gpu_memory_utilization"
require_positive_int MAX_NUM_SEQS "$max_num_seqs"
require_positive_int MAX_NUM_BATCHED_TOKENS "$max_num_batched_tokens"
require_positive_int TENSOR_PARALLEL_SIZE "$tensor_parallel_size"
[[ -z $pipeline_parallel_size ]] || require_positive_int PIPELINE_PARALLEL_SIZE "$pipeline_parallel_size"
[[ -z $data_parallel_size ]] || require_positive_int DATA_PARALLEL_SIZE "$data_parallel_size"
contains "$dtype" "${DTYPES[@]}" || die "DTYPE must be one of: ${DTYPES[*]}; got '$dtype'"
[[ -z $quantization ]] || check_quantization "$quantization"
[[ -z $enable_prefix_caching ]] || enable_prefix_caching=$(parse_bool ENABLE_PREFIX_CACHING "$enable_prefix_caching")
if [[ -n $limit_mm_per_prompt ]]; then
	if [[ $limit_mm_per_prompt =~ ^[0-9]{1,4}$ ]]; then
		limit_mm_per_prompt="{\"image\": $((10#$limit_mm_per_prompt))}"
	elif [[ ! $limit_mm_per_prompt =~ ^\{.*\}$ ]]; then
		die "LIMIT_MM_PER_PROMPT must be a number of images or a JSON object such as {\"image\": 2}, got '$limit_mm_per_prompt'"
	fi
fi
split_extra_args "${VLLM_EXTRA_ARGS:-}"

if [[ -z ${SERVED_MODEL_NAME:-} && ($model == /* || $model == .* || $model == "~"* || -e $model) ]]; then
	warn "MODEL '$model' is a local path and SERVED_MODEL_NAME is unset: vLLM serves it as '$model', so the gateway's OCRFLUX_MODEL must equal that path (or set SERVED_MODEL_NAME=ChatDOC/OCRFlux-3B)"
fi

cmd=(
	vllm serve "$model"
	--host "$host"
	--port "$port"
	--served-model-name "$served_model_name"
	--max-model-len "$max_model_len"
	--gpu-memory-utilization "$gpu_memory_utilization"
	--max-num-seqs "$max_num_seqs"
	--max-num-batched-tokens "$max_num_batched_tokens"
	--tensor-parallel-size "$tensor_parallel_size"
	--dtype "$dtype"
)
[[ -z $pipeline_parallel_size ]] || cmd+=(--pipeline-parallel-size "$pipeline_parallel_size")
[[ -z $data_parallel_size ]] || cmd+=(--data-parallel-size "$data_parallel_size")
[[ -z $quantization ]] || cmd+=(--quantization "$quantization")
[[ -z $limit_mm_per_prompt ]] || cmd+=(--limit-mm-per-prompt "$limit_mm_per_prompt")
case $enable_prefix_caching in
true) cmd+=(--enable-prefix-caching) ;;
false) cmd+=(--no-enable-prefix-caching) ;;
esac
cmd+=("${extra_args[@]}")

# Shell-quoted, so the printed line can be pasted back into a shell as is.
printf '+'
for word in "${cmd[@]}"; do
	if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
		printf ' %s' "$word"
	else
		printf " '%s'" "${word//"'"/"'\''"}"
	fi
done
printf '\n'
[[ -z $api_key ]] || printf '%s: API_KEY is set; vLLM gets it as VLLM_API_KEY (value not shown)\n' "$PROG" >&2

if [[ $dry_run == true ]]; then
	exit 0
fi

command -v vllm >/dev/null 2>&1 ||
	die "vllm is not on PATH; install it (pip install vllm) or use the vllm/vllm-openai image"

# vLLM reads VLLM_PORT as its internal base port (it would collide with --port when a shared
# .env exported the gateway's VLLM_PORT) and warns about unknown VLLM_* names: hide ours.
unset VLLM_PORT VLLM_URL VLLM_EXTRA_ARGS API_KEY
[[ -z $api_key ]] || export VLLM_API_KEY="$api_key"
exec "${cmd[@]}"
