#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint, types, then pytest.
# Usage: bash tests/run.sh [pytest args...]   (e.g. bash tests/run.sh -k risk)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "tests/run.sh: installing redis-server from Debian's packages"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # Ray >= 2.59 defaults local clusters to token auth
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
python3 -m pytest "$@"
