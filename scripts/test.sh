#!/usr/bin/env bash
# Set everything up, then lint, type-check and run the whole test suite against the local PostgreSQL
# (WORKER_TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
# The 20 slowest tests are listed at the end: the whole of .ci/run must stay under 15 minutes.
exec .venv/bin/python -m pytest --durations=20 "$@"
