#!/usr/bin/env bash
# Set up everything the project needs in ./.venv, plus ffmpeg (the studio's live playback).
# With --dev, also what the tests need: Debian packages (speech synthesisers, sox,
# Chromium for browser tests) and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

if command -v apt-get >/dev/null; then
    packages="ffmpeg"
    [ "$dev" = 1 ] && packages="$packages espeak-ng flite sox libsox-fmt-all chromium fortunes festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
    missing=""
    for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        if [ "$dev" = 1 ]; then
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
        else
            # Best effort, never a password prompt: the studio runs without live playback.
            [ -n "$SUDO" ] && SUDO="sudo -n"
            if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                   $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; } 2>/dev/null; then
                echo "note: could not install$missing (try: sudo apt-get install$missing); the studio works, without live playback" >&2
            fi
        fi
    fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -r requirements-dev.txt
    # cffconvert (CITATION.cff's validator) pins jsonschema 3, older than the studio's: its own venv.
    [ -x .tools/cffconvert/bin/cffconvert ] || { "$PY" -m venv .tools/cffconvert &&
        .tools/cffconvert/bin/python -m pip install -q cffconvert==2.0.0; }
else
    .venv/bin/python -m pip install -q -r requirements.txt
fi
# resemblyzer only carries the official encoder weights; its own dependencies would
# replace webrtcvad-wheels with the source-only webrtcvad, so install it alone.
.venv/bin/python -m pip install -q --no-deps resemblyzer==0.1.4
# The project itself, editable, for the training console commands (sv2tts-*); no new dependencies.
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -c "import webrtcvad, torch, librosa; import encoder.inference as e; e.default_weights_path()"
# librosa compiles its numba kernels (pitch tracking among them) into a cache on first use. Two
# processes compiling them at once can leave a cache that crashes the next reader (numba issue
# 10128), so one process compiles them here, before any studio, job or test runs.
.venv/bin/python -c "from deepfake_audio.training.measures import warm_numba_cache; warm_numba_cache()"
# The fast vocoder's C loop, built now rather than on the first clone (it falls back to
# its TorchScript loop where there is no C compiler: the reason is printed).
.venv/bin/python -m vocoder.native || true
