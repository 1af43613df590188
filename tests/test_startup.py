"""What every process pays at start: importing the package loads no module it may never use.

Every command, server, training step and tuning job imports `deepfake_audio`; inflect (4 s)
and scipy.signal (1 s) were imported with it and are now loaded on first use, and so is the
pipeline (with torch, 2 s) for the processes that never clone: downloads, the corpus builder.
The emphasis filters that replaced scipy's at import time give scipy's numbers.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from scipy.signal import lfilter

from deepfake_audio_core.emphasis import de_emphasis, de_emphasis_part, pre_emphasis

LAZY = ("inflect", "scipy.signal")


def test_the_package_imports_without_its_lazy_dependencies():
    code = ("import json, sys; import deepfake_audio.pipeline, deepfake_audio.cli, deepfake_audio.training; "
            f"print(json.dumps([m for m in {list(LAZY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_download_or_the_corpus_builder_does_not_load_torch():
    code = ("import json, sys; import deepfake_audio.download, deepfake_audio.training.corpus; "
            "print(json.dumps('torch' in sys.modules)); from deepfake_audio import Pipeline; "
            "print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert [json.loads(line) for line in out.stdout.split()] == [False, True]  # the pipeline's names still work


def test_emphasis_gives_scipys_numbers():
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.3
    assert np.array_equal(pre_emphasis(x, 0.97), lfilter([1, -0.97], [1], x))
    whole = de_emphasis(pre_emphasis(x, 0.97), 0.97)
    np.testing.assert_allclose(whole, x, atol=1e-5)
    parts, state = [], np.zeros(1)
    for piece in np.array_split(pre_emphasis(x, 0.97), 7):
        y, state = de_emphasis_part(piece, 0.97, state)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-12)
