"""Run a Python module as a studio job: at the lowest CPU priority, and dying with the studio.

    python -m deepfake_audio.studio.low_priority PARENT_PID MODULE [ARGS...]

The job's process sets these on itself, after it started, rather than in a `preexec_fn`
between fork and exec: the studio is multi-threaded (requests, torch's pools), and a
forked child that runs Python code before exec can deadlock on a lock another thread held
at the fork; the studio, waiting for that exec, then hangs with the queue's lock held.
"""
from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def lower_priority(parent: int) -> None:
    """Nice 19; on Linux also SIGTERM when the thread that started us exits (the studio stopped):
    a training job then saves its checkpoint between two steps (`training.loop`) and exits, and the
    restarted studio resumes it from there; anything else dies at once, as on SIGKILL.

    Exits at once when `parent` is no longer our parent: the studio died before the signal was set."""
    try:
        os.nice(19 - os.nice(0))
    except (AttributeError, OSError):  # Windows has no nice; a job then runs at normal priority
        pass
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
    if parent and os.getppid() != parent:
        sys.exit("The studio that started this job has stopped.")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m deepfake_audio.studio.low_priority PARENT_PID MODULE [ARGS...]")
    lower_priority(int(argv[0]))
    module = argv[1]
    sys.argv = [module] + argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
