# syntax=docker/dockerfile:1
# OCRFlux gateway image: the API only (vLLM runs in its own image, see docker-compose.yml).
#   docker build -t ocrflux-api .
#   docker run -p 127.0.0.1:8000:8000 -e VLLM_URL=http://gpu-server -e VLLM_PORT=30024 ocrflux-api
# With the embedded CPU OCR engine instead of vLLM (the compose file's `cpu` profile):
#   docker build --build-arg EXTRAS=cpu -t ocrflux-api:cpu .
#   docker run -p 127.0.0.1:8000:8000 -e OCR_BACKEND=local ocrflux-api:cpu
# Configuration is environment-only (.env.example lists every variable); no .env is baked in.

# --- builder: resolve and install dependencies into a self-contained venv ----------------
FROM python:3.11-slim AS builder

# Optional extras of the package: `cpu` adds the embedded CPU OCR engine (~380 MB). Empty:
# the gateway alone, for a GPU deployment in front of vLLM.
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# Dependencies first, so editing the gateway's code does not re-download them.
COPY requirements-api.txt ./
RUN pip install --no-cache-dir -r requirements-api.txt

COPY pyproject.toml README.md ./
COPY ocrflux ./ocrflux
# --no-deps: the requirements above are the complete runtime set (a test keeps them equal).
# An extra's packages come with the version ranges pyproject.toml gives them, as those above.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . \
    && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir ".[$EXTRAS]"; fi \
    && pip uninstall --yes pip setuptools

# --- runtime: the venv on a clean slim base, as a non-root user ---------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    DATA_DIR=/data

# The CPU engine reads scripts its recogniser cannot (Korean, Arabic) with Debian's Tesseract.
ARG EXTRAS=""
# hadolint ignore=DL3008
RUN if [ "$EXTRAS" = "cpu" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-kor tesseract-ocr-ara \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN groupadd --system --gid 10001 ocrflux \
    && useradd --system --uid 10001 --gid ocrflux --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ocrflux \
    && mkdir /data && chown 10001:10001 /data

# Batch jobs: the SQLite database and the files (uploads, outputs). A volume, so they outlive
# the container; in a fleet, one every gateway mounts (docker-compose.fleet.yml). A new named
# volume starts as a copy of this directory, owned by the gateway's user.
VOLUME ["/data"]

COPY --from=builder /opt/venv /opt/venv

# An empty working directory: the settings loader looks for ./.env, and none must be found.
WORKDIR /app
# Numeric, so orchestrators can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# The slim base has no curl; the venv's Python does the probe (stdlib only).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('API_PORT', '8000') + '/health', timeout=4)"]

CMD ["python", "-m", "ocrflux.api_server"]
