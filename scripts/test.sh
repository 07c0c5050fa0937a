#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the CPU test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    -h|--help)
        echo "Usage: scripts/test.sh [PYTEST ARGUMENTS]"
        echo "Sets up .venv (scripts/setup_env.sh test), then runs the CPU test suite with"
        echo "pytest -n 2; arguments go to pytest (e.g. tests/inference -k style)."
        exit 0 ;;
esac
scripts/setup_env.sh test
# The tests lint scripts/ with the Debian package shellcheck: install it where we may.
if ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends shellcheck >/dev/null) || echo "shellcheck not installed: its test will skip"
fi
exec .venv/bin/python -m pytest -n 2 "$@"
