"""A voice's typical pitch from its speaker embedding alone.

A clone made from a saved voice (an embedding, without its recording) cannot measure the
reference's pitch. The GE2E embedding carries it: a ridge regression from the embedding
(256,) to the median log-F0 of the speaker, fitted on the starter corpus's voices and
pseudo-speakers (`python -m deepfake_audio.training.voice_pitch`), predicts it within
about 9 % (median, voices held out by base voice; the model card has the figures).

    weights: w (256,), bias ()  ->  median F0 = exp(w . e + bias) Hz, clipped to 50-600 Hz
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepfake_audio_core.checkpoint import MissingMessage, read_checkpoint
from deepfake_audio_core.errors import WeightsError

VOICE_PITCH_FILE = "voice_pitch.pt"
ARCHITECTURE = "voice_pitch"
F0_RANGE = (50.0, 600.0)


class VoicePitch:
    """Embedding -> median F0 (Hz) of the voice."""

    def __init__(self, weights: Path | str, missing_message: MissingMessage | None = None):
        self.weights = Path(weights)
        ckpt = read_checkpoint(self.weights, missing_message)
        if ckpt.get("architecture") != ARCHITECTURE:
            raise WeightsError(f"{self.weights} is not a voice-pitch model (architecture "
                               f"{ckpt.get('architecture')!r}).")
        try:
            self.w = ckpt["w"].double().numpy().reshape(-1)
            self.bias = float(ckpt["bias"])
        except (KeyError, AttributeError, TypeError, ValueError):
            raise WeightsError(f"{self.weights} has no w and bias; it is not a voice-pitch model.") from None
        self.step = int(ckpt.get("voices", 0))

    def __call__(self, embedding: np.ndarray) -> float:
        """Median F0 in Hz of the voice of `embedding` (256,)."""
        e = np.asarray(embedding, dtype=np.float64).reshape(-1)
        if e.shape != self.w.shape:
            raise ValueError(f"expected an embedding of {self.w.shape[0]} values, got {e.shape}")
        e = e / max(float(np.linalg.norm(e)), 1e-9)
        return float(min(max(math.exp(float(self.w @ e) + self.bias), F0_RANGE[0]), F0_RANGE[1]))
