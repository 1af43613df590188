#!/usr/bin/env bash
# Set up (including test-only packages) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# Two processes (pytest-xdist), a test file each at a time: one process alone leaves a core idle
# while a test waits on a browser, a server or a subprocess (21.5 -> 16.5 minutes here).
# Arguments go to pytest after these, so `-n 0` runs everything in one process.
# A crash in native code (a segfault) prints the Python stack of every process the tests start.
export PYTHONFAULTHANDLER=1
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
