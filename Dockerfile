# Helios worker and ingester image: `docker build -t helios .`
#   docker run helios                                  -> helios worker
#   docker run helios ingest --source synthetic ...    -> helios ingest ...
# Runs as uid 10001 with a read-only root filesystem in Kubernetes (k8s/helios-inference); the only
# writable paths it needs are HELIOS_DATA_DIR (/var/lib/helios) and /tmp.

# --- build: the project and its runtime dependencies in a virtualenv ---
FROM python:3.11-slim AS build

# A compiler only for dependencies that ship no wheel for this platform; it stays in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/helios
WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY pipeline ./pipeline
COPY agents ./agents
# Runtime dependencies only (no [dev] extra); a regular install copies models/artifacts/ (the
# default model, package data) into site-packages, where HELIOS_MODEL_PATH points by default.
# The check runs isolated (-I, so /src is not on sys.path) and fails the build without the artifact.
RUN /opt/helios/bin/pip install --no-cache-dir . \
    && /opt/helios/bin/python -I -c "from pipeline.settings import DEFAULT_MODEL_PATH as p; \
assert str(p).startswith('/opt/helios/') and any(p.rglob('*.json')), p"

# --- runtime ---
FROM python:3.11-slim

RUN groupadd --system --gid 10001 helios \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin helios \
    && mkdir -p /var/lib/helios \
    && chown 10001:10001 /var/lib/helios

COPY --from=build /opt/helios /opt/helios

# MPLCONFIGDIR: matplotlib (pulled in by Prophet) wants a writable config dir; the root fs is read-only.
ENV PATH=/opt/helios/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HELIOS_DATA_DIR=/var/lib/helios \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001
WORKDIR /var/lib/helios
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HELIOS_PORT', '8080') + '/health', timeout=3)"]

ENTRYPOINT ["helios"]
CMD ["worker"]
