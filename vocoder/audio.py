"""Vocoder sample-domain helpers: mu-law (emphasis is `deepfake_audio_core.emphasis`). Float64 as in the reference."""
from __future__ import annotations

import numpy as np


def label_to_float(x: np.ndarray, bits: int) -> np.ndarray:
    """Class index in [0, 2^bits) -> float in [-1, 1]."""
    return 2 * x / (2**bits - 1.0) - 1.0


def float_to_label(x: np.ndarray, bits: int) -> np.ndarray:
    """Float in [-1, 1] -> class index in [0, 2^bits)."""
    return (x + 1.0) * (2**bits - 1) / 2


def encode_mu_law(x: np.ndarray, mu: int) -> np.ndarray:
    """Compand [-1, 1] audio and quantise to `mu` classes."""
    mu = mu - 1
    fx = np.sign(x) * np.log(1 + mu * np.abs(x)) / np.log(1 + mu)
    return np.floor((fx + 1) / 2 * mu + 0.5)


def decode_mu_law(y: np.ndarray, mu: int, from_labels: bool = True) -> np.ndarray:
    """Inverse of mu-law companding; `y` in [-1, 1] (or class labels when `from_labels`)."""
    if from_labels:
        y = label_to_float(y, np.log2(mu))
    mu = mu - 1
    return np.sign(y) / mu * ((1 + mu) ** np.abs(y) - 1)
