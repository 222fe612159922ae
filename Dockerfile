# syntax=docker/dockerfile:1
# The worker daemon as a container. Build:  docker build -t worker .
# Run:    docker run --env-file .env -p 8080:8080 worker            (the default command is `worker run`)
# Other:  docker run --env-file .env worker migrate                 (any `worker` subcommand)
# The base is a build argument (any Debian-like image with python3 >= 3.11 and its venv module):
#         docker build --build-arg PYTHON_IMAGE=registry.example/python:3.11-slim-bookworm -t worker .
# tests/test_image.py builds this file on a stand-in base and runs the image (marker `image`).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- stage 1: a virtual environment with the locked dependencies and the worker's wheel -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (their own layer, rebuilt only when the lock changes): exactly the pins of requirements.lock,
# each checked against its sha256 (the same lock tests/test_lock.py checks against pyproject.toml).
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# Then the worker itself, non-editable, without letting pip resolve anything else.
COPY pyproject.toml README.md LICENSE ./
COPY worker ./worker
COPY sql ./sql
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps /wheels/*.whl \
    && pip check \
    && python -m compileall -q /opt/venv/lib

# --- stage 2: the runtime: no compilers, no sources, a non-root user ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    WORKER_HTTP_HOST=0.0.0.0 \
    WORKER_HTTP_PORT=8080 \
    WORKER_LOG_FORMAT=json
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid worker --home-dir /app --no-create-home --shell /usr/sbin/nologin worker \
    && mkdir /app && chown worker:worker /app
COPY --from=build /opt/venv /opt/venv
COPY LICENSE /usr/share/licenses/worker/LICENSE
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Liveness of the process (the event loop answers); readiness (/readyz) is for orchestrators.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WORKER_HTTP_PORT', '8080'), timeout=4)"]
# The daemon is PID 1 (exec form, no shell): it receives SIGTERM itself, stops claiming, gives running jobs
# WORKER_SHUTDOWN_GRACE_S, hands back what is left and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["worker"]
CMD ["run"]
