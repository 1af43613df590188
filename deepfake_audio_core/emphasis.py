"""First-order pre-emphasis and its inverse, shared by the synthesizer's and the vocoder's audio code.

Both are float64, as scipy's `lfilter` gives them (the reference's arithmetic). scipy.signal is
imported only by `de_emphasis`: it takes about a second to import, and a process that never
computes a mel or de-emphasises (a download, the corpus builder, a training step on packed
data, a command's --help) then never loads it. (librosa's mel code imports it too, so a
process that clones pays it once, on first use.)
"""
from __future__ import annotations

import numpy as np


def pre_emphasis(x: np.ndarray, k: float) -> np.ndarray:
    """y[n] = x[n] - k x[n-1], y[0] = x[0]: (samples,) float64. The same operations as
    `lfilter([1, -k], [1], x)`, so the same bits."""
    x = np.asarray(x, np.float64)
    y = x.copy()
    y[1:] -= k * x[:-1]
    return y


def de_emphasis(x: np.ndarray, k: float) -> np.ndarray:
    """y[n] = x[n] + k y[n-1]: (samples,) float64, the inverse of `pre_emphasis`."""
    from scipy.signal import lfilter
    return lfilter([1], [1, -k], x)


def de_emphasis_part(x: np.ndarray, k: float, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`de_emphasis` of the next part of a stream: (y (samples,), the filter's state (1,) to pass
    with the part after). Start with `np.zeros(1)`."""
    from scipy.signal import lfilter
    return lfilter([1], [1, -k], x, zi=state)
