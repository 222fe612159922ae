#!/usr/bin/env bash
# Regenerate the two lock files from pyproject.toml (after changing a dependency or to take upgrades):
#   requirements-dev.lock  runtime + test, dev and demo extras: what scripts/setup.sh (and so CI) installs;
#   requirements.lock      runtime only, constrained to the same versions: what the Dockerfile installs.
# Both carry sha256 hashes and are installed with `pip install --require-hashes`. Pass uv options through,
# e.g. `bash scripts/lock.sh --upgrade` or `--upgrade-package httpx`. tests/unit/test_lock.py checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-$( [ -x .venv/bin/uv ] && echo .venv/bin/uv || echo uv )}
common=(--generate-hashes --python-version 3.11 --quiet --custom-compile-command "bash scripts/lock.sh")
"$UV" pip compile pyproject.toml --extra test --extra dev --extra demo "${common[@]}" "$@" -o requirements-dev.lock
"$UV" pip compile pyproject.toml -c requirements-dev.lock "${common[@]}" -o requirements.lock
