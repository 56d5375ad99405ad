#!/usr/bin/env bash
# Build the HTML API docs from the docstrings into docs/utilities/ (pdoc3).
# Usage: bash docs/build.sh      (uses .venv/ when present, else the pdoc on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PDOC=pdoc
[ -x .venv/bin/pdoc ] && PDOC=.venv/bin/pdoc
TF_CPP_MIN_LOG_LEVEL=3 "$PDOC" --html --force --output-dir docs utilities
echo "docs written to docs/utilities/index.html"
