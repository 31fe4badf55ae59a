#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint, types, then pytest.
# Usage: bash tests/run.sh [pytest args...]   (e.g. bash tests/run.sh -k risk)
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server for the store tests, chromium for the HTML report's browser test.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]} from Debian's packages"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export HFT_RAY_REQUIRE_BROWSER=1  # the browser test fails instead of skipping

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"  # Ray >= 2.59 defaults local clusters to token auth
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
python3 -m pytest --durations=25 "$@"
