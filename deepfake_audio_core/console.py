"""How every command-line entry point ends: a user-facing error is one line, never a traceback."""
from __future__ import annotations

import sys
from typing import Callable

from deepfake_audio_core.errors import DeepfakeAudioError


def run_command(action: Callable[[], object], debug: bool = False, catch_all: bool = False) -> int:
    """Run `action` and return its exit status (its int result, else 0).

    A `DeepfakeAudioError` prints `error: <message>` on stderr and returns 2; Ctrl+C
    prints `interrupted` and returns 130. With `catch_all`, any other exception (a bug,
    not bad input) is one line too and returns 1. `debug` re-raises instead.
    """
    try:
        status = action()
        return status if isinstance(status, int) and not isinstance(status, bool) else 0
    except DeepfakeAudioError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not catch_all:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1
