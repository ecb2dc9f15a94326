#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them all (root: lab tests too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check natpass tests bench
python3 -m mypy
lint-imports
exec python3 -m pytest -q -p no:cacheprovider "$@"
