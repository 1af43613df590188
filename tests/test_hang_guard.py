"""A test that pytest-timeout cannot stop (SIGALRM blocked) ends the run with its stacks, instead of hanging CI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_a_test_that_outlives_pytest_timeout_ends_the_run(tmp_path):
    (tmp_path / "test_stuck.py").write_text(
        "import signal, time\n"
        "def test_stuck():\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # pytest-timeout's signal never lands\n"
        "    time.sleep(120)\n")
    env = {**os.environ, "DEEPFAKE_AUDIO_TEST_HARD_LIMIT": "4",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "hang_guard_plugin", "-o", "timeout=1", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / "test_stuck.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert time.monotonic() - began < 60 and proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "test_stuck.py::test_stuck has run over 4 s" in proc.stderr and " in test_stuck" in proc.stderr  # its stack
