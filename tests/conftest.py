"""Shared fixtures: the seed-1 checkpoints the reference vectors were made with."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

import weights  # noqa: E402  (tests/weights.py)

pytest_plugins = ["hang_guard_plugin"]  # a test that outlives pytest-timeout ends the run (tests/hang_guard.py)


DATA = TESTS / "data"
# The reference vectors were made on 2 threads. When pytest-xdist runs two test processes
# (scripts/test.sh), each computes on one: two processes of two OpenMP threads on two cores
# make every small operation wait at a barrier for a thread the other process has descheduled
# (the likely cause of a starter clone taking over 3 minutes on CI, 10 s alone). Subprocesses the tests start
# (CLI runs, studio servers) inherit the setting.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, 2 // WORKERS)
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(THREADS)


@pytest.fixture(scope="session")
def seed1_dir(tmp_path_factory) -> Path:
    """A models folder with encoder.pt, synthesizer.pt and vocoder.pt made by the formula (seed 1)."""
    folder = tmp_path_factory.mktemp("seed1")
    weights.write_checkpoints(folder, seed=1)
    return folder


def vector(name: str) -> np.ndarray:
    """A reference test vector from tests/data."""
    return np.load(DATA / name)


@pytest.fixture(scope="session")
def quick_dir(tmp_path_factory) -> Path:
    """Seed-1 checkpoints whose synthesizer stops after 14 frames (fast end-to-end runs)."""
    folder = tmp_path_factory.mktemp("quick")
    weights.write_quick_checkpoints(folder, seed=1)
    return folder
