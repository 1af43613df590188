"""Deepfake Audio: SV2TTS voice cloning compatible with the published checkpoints.

    from deepfake_audio import Pipeline
    pipe = Pipeline()                       # loads saved_models/default once
    result = pipe.clone("voice.wav", "Hello there.", seed=1)
    result.wav, result.sample_rate          # float32 audio at 16 kHz

Layers (imports only point down): `core` (the base), the stages `encoder`,
`synthesizer` and `vocoder` (top-level packages), `pipeline` (where they meet), and on
top the CLI, the studio and `training`.
"""
from __future__ import annotations

from deepfake_audio_core.errors import (AudioError, DeepfakeAudioError, MissingWeightsError, RequestError, TextError,
                                        WeightsError)

__all__ = ["Pipeline", "CloneResult", "ClonePlan", "ProgressEvent", "DeepfakeAudioError", "AudioError", "TextError",
           "WeightsError", "MissingWeightsError", "RequestError"]


def __getattr__(name: str):
    # Every stage imports `deepfake_audio_core`, which runs this file first: loading the
    # pipeline (and so the stages) here eagerly would import a stage while it is being
    # imported. The public names are therefore resolved on first use.
    if name in ("Pipeline", "CloneResult", "ClonePlan", "ProgressEvent"):
        from deepfake_audio import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
