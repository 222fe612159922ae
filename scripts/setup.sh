#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine: system packages (as root, when missing), a virtual
# environment in .venv with exactly the pins of requirements-dev.lock (hash-checked: runtime, test, dev and demo
# dependencies), then the package itself, editable, without resolving anything. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = "0" ] && [ -f .ci/apt-packages.txt ]; then
  missing=()
  while read -r pkg; do
    [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < .ci/apt-packages.txt
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# The lock, not the version ranges: tests run what the image ships (tests/unit/test_lock.py checks both agree).
"${pip[@]}" --require-hashes --no-deps -r requirements-dev.lock
"${pip[@]}" --no-deps -e .
