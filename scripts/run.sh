#!/usr/bin/env bash
# Set up (first run only takes long) and start the studio on http://127.0.0.1:7860.
# Extra arguments go to app.py, e.g. --host 0.0.0.0 --port 8080 --models DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
