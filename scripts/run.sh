#!/usr/bin/env bash
# Set everything up, migrate the configured database and run the daemon (DATABASE_URL, default: the local
# PostgreSQL's `postgres` database).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
exec .venv/bin/worker run --migrate
