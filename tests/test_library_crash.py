"""A studio killed in the middle of a save or a clone restarts with a consistent library.

A child process works on a library and dies (`os._exit`, as `kill -9` would leave it) at
each point of a save and of recording a clone's result, or is killed with SIGKILL at
random moments of a loop of both. The start-up repair must then leave: no staging
folders or files, every history file listed and every listed file present, no voice-map
entry after the history's last result, and numbering that never reuses a number.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from deepfake_audio_core.audio_io import write_wav
from deepfake_audio.studio.library import HistoryLog, ResultLog, VoiceLibrary, record_result, repair_library

CHILD = textwrap.dedent('''
    import os, sys, itertools
    import numpy as np
    from pathlib import Path
    from deepfake_audio.studio import library as L

    root, point = Path(sys.argv[1]), sys.argv[2]
    voices, results, history = L.VoiceLibrary(root / "voices"), L.ResultLog(root / "results.json"), \\
        L.HistoryLog(root / "history")
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        src, dst = Path(src), Path(dst)
        if ((point == "save" and src.name.startswith(".new-"))
                or (point == "history_file" and src.name.startswith(".part-"))
                or (point == "history_index" and dst.name == "history.json")
                or (point == "results" and src.name.startswith(".results-"))):
            os._exit(9)
        return real_replace(src, dst, *args, **kwargs)
    L.os.replace = replace
    if point == "between":
        L.ResultLog.add = lambda *a, **k: os._exit(9)

    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    def unit():
        v = rng.normal(size=256).astype(np.float32)
        return v / np.linalg.norm(v)
    start = len(voices.names())
    print("ready", flush=True)
    for n in itertools.count(start):
        voices.save(f"Voice {n}", unit(), rng.uniform(-0.5, 0.5, 16000).astype(np.float32), 16000, consent=1.0)
        L.record_result(history, results, root / "clip.wav", f"Take {n}", f"Voice {n}", n, 1.0, unit(), unit(), 0.5)
        if point != "loop":
            break
''')


def library(root: Path):
    return VoiceLibrary(root / "voices"), ResultLog(root / "results.json"), HistoryLog(root / "history")


def run_child(root: Path, point: str, kill_after: float | None = None) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), point], env=env, cwd=Path(__file__).parents[1],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return child.wait(timeout=120)
    assert child.stdout.readline().strip() == b"ready"  # killed while it works, not while it starts
    time.sleep(kill_after)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    return child.returncode


def check_consistent(root: Path) -> None:
    voices, results, history = library(root)
    assert not [p.name for p in (root / "voices").iterdir() if p.name.startswith((".new-", ".deleted-"))]
    assert not list((root / "voices").glob("*/.*.npy"))
    assert not [p.name for p in (root / "history").iterdir() if p.name.startswith((".part-", ".history-"))]
    assert not list(root.glob(".results-*"))
    folders = [p for p in (root / "voices").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(voices.list()) == len(folders)  # every voice readable
    listed = json.loads((root / "history" / "history.json").read_text()) if (root / "history" / "history.json").exists() \
        else []
    files = sorted(p.name for p in (root / "history").iterdir() if p.stem.isdigit())
    assert sorted(r["file"] for r in listed) == files  # nothing listed without a file, no file unlisted
    numbers = {r["number"] for r in listed}
    assert all(e.number <= max(numbers, default=0) for e in results.list())
    # the next result takes a new number, the same in the history and the voice map
    before = {int(Path(f).stem) for f in files}
    entry = record_result(history, results, root / "clip.wav", "After the restart", None, 1, 1.0,
                          np.eye(256, dtype=np.float32)[0], np.eye(256, dtype=np.float32)[1], 0.9)
    assert entry.number > max(before, default=0) and results.list()[-1].number == entry.number


@pytest.fixture
def root(tmp_path) -> Path:
    write_wav(tmp_path / "clip.wav", np.zeros(16000, np.float32), 16000)
    return tmp_path


@pytest.mark.parametrize("point", ["save", "history_file", "history_index", "between", "results"])
def test_a_crash_at_each_point_is_repaired(root, point):
    voices, results, history = library(root)  # one voice and one result, written whole
    voices.save("First", np.eye(256, dtype=np.float32)[5], np.zeros(16000, np.float32), 16000, consent=1.0)
    record_result(history, results, root / "clip.wav", "First take", "First", 1, 1.0,
                  np.eye(256, dtype=np.float32)[5], np.eye(256, dtype=np.float32)[6], 0.8)
    assert run_child(root, point) == 9
    repaired = repair_library(*library(root))
    if point in ("save", "history_file", "history_index", "results"):
        assert repaired, point  # something was left behind, and the repair says what it removed
    check_consistent(root)
    assert repair_library(*library(root)) == []  # and a second start finds nothing to do


def test_kill_9_at_random_moments_then_restart(root):
    rng = random.Random(7)
    for _ in range(3):
        run_child(root, "loop", kill_after=rng.uniform(0.05, 0.6))
    assert len(VoiceLibrary(root / "voices").list()) >= 3  # the loops did work before they were killed
    repair_library(*library(root))
    check_consistent(root)


def test_the_studio_repairs_every_library_when_it_starts(root, caplog):
    from deepfake_audio.studio import Studio, owners
    owner = owners.owner_folder(root, "someone-with-a-long-token-0123456789")
    (owner / "voices" / ".new-abc").mkdir(parents=True)
    (root / "history").mkdir()
    (root / "history" / "000003.wav").write_bytes((root / "clip.wav").read_bytes())
    with caplog.at_level("WARNING"):
        studio = Studio(root / "models", root, pipeline=object(), private=True)
    assert any(".new-abc" in line for line in studio.repaired[str(owner)])
    assert any("000003.wav" in line for line in studio.repaired[str(root)])
    assert "removed the unfinished .new-abc" in caplog.text
    assert not (owner / "voices" / ".new-abc").exists() and not (root / "history" / "000003.wav").exists()
