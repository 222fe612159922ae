# syntax=docker/dockerfile:1
# The worker daemon as a container. Build:  docker build -t worker .
# Run:    docker run --env-file .env -p 8080:8080 worker            (the default command is `worker run`)
# Other:  docker run --env-file .env worker migrate                 (any `worker` subcommand)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- stage 1: a virtual environment with the locked dependencies and the worker's wheel -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (their own layer, rebuilt only when the lock changes): exact pins from requirements.lock.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock
# Then the worker itself, non-editable, without letting pip resolve anything else.
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY sql ./sql
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps /wheels/*.whl \
    && pip check

# --- stage 2: the runtime: no compilers, no sources, a non-root user ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
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
