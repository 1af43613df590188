"""The last guard against a hung run: a test that outlives pytest-timeout ends the whole run.

pytest-timeout (pytest.ini: 600 s, signal method) fails a hung test and the run goes on, but
its SIGALRM cannot reach a test blocked where signals wait (a C lock, a blocked signal mask).
Then CI would wait for its own limit with nothing printed. This thread notices a test that has
run `HARD_LIMIT_S`, prints every thread's stack and ends the process with a failure.
"""
from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time

HARD_LIMIT_S = float(os.environ.get("DEEPFAKE_AUDIO_TEST_HARD_LIMIT", "900"))
_running: dict = {"test": None, "since": None}
_config = None


def test_started(nodeid: str) -> None:
    _running.update(test=nodeid, since=time.monotonic())


def test_finished() -> None:
    _running.update(test=None, since=None)


def start(config=None) -> None:
    """Start the guard thread (once per process); `config` (pytest's) lets it print past the output capture."""
    global _config
    _config = config
    if any(t.name == "test-hang-guard" for t in threading.enumerate()):
        return
    threading.Thread(target=_watch, name="test-hang-guard", daemon=True).start()


def _watch() -> None:
    while True:
        time.sleep(min(10.0, HARD_LIMIT_S / 4))
        test, since = _running["test"], _running["since"]
        if since is not None and time.monotonic() - since > HARD_LIMIT_S:
            capture = _config.pluginmanager.getplugin("capturemanager") if _config is not None else None
            if capture is not None:  # else what is printed goes to the test's captured output, lost on exit
                capture.suspend_global_capture(in_=True)
            sys.stderr.write(f"\n\n{test} has run over {HARD_LIMIT_S:.0f} s and pytest-timeout could not stop it: "
                             "ending the test run. Every thread's stack:\n")
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
            os._exit(3)
