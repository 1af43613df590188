"""Deepfake Audio: SV2TTS voice cloning compatible with the published checkpoints.

    from deepfake_audio import Pipeline
    pipe = Pipeline()                       # loads saved_models/default once
    result = pipe.clone("voice.wav", "Hello there.", seed=1)
    result.wav, result.sample_rate          # float32 audio at 16 kHz
"""
from __future__ import annotations

from deepfake_audio.errors import AudioError, DeepfakeAudioError, MissingWeightsError, TextError, WeightsError

__all__ = ["Pipeline", "CloneResult", "DeepfakeAudioError", "AudioError", "TextError", "WeightsError",
           "MissingWeightsError"]


def __getattr__(name: str):
    # Lazy, so that importing the errors (done by the stage packages) does not load every model module.
    if name in ("Pipeline", "CloneResult"):
        from deepfake_audio import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
