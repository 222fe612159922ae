#!/usr/bin/env bash
# Set everything up, then run the one-command demo: a private PostgreSQL (unless DATABASE_URL is set), the
# platform simulator, the daemon with its HTTP port, and a sync job; prints the summary and the metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/worker demo "$@"
