"""Deepfake Audio: SV2TTS voice cloning compatible with the published checkpoints.

    from deepfake_audio import Pipeline
    pipe = Pipeline()                       # loads saved_models/default once
    result = pipe.clone("voice.wav", "Hello there.", seed=1)
    result.wav, result.sample_rate          # float32 audio at 16 kHz

Layers (imports only point down): `deepfake_audio_core` (the base), the stages `encoder`,
`synthesizer` and `vocoder`, the services (download, watermark, script, perth_compat),
`pipeline` (where they meet), the runners (streaming, batch) and on top the CLI, the
studio and `training`. The base and the stages are top-level packages that never import
this one. The pipeline's public names are offered here, imported on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from deepfake_audio_core.errors import (AudioError, DeepfakeAudioError, MissingWeightsError, RequestError, TextError,
                                        WeightsError)

if TYPE_CHECKING:
    from deepfake_audio.pipeline import ClonePlan, CloneResult, Pipeline, ProgressEvent
    from deepfake_audio_core.tuned import TunedVoice, load_tuned_voice

# Loaded on first use (PEP 562), not with the package: torch and the pipeline take seconds to
# import, and every process imports this package, also those that never clone (downloads, the
# corpus builder, a command's --help).
_LAZY = {"Pipeline": "deepfake_audio.pipeline", "CloneResult": "deepfake_audio.pipeline",
         "ClonePlan": "deepfake_audio.pipeline", "ProgressEvent": "deepfake_audio.pipeline",
         "TunedVoice": "deepfake_audio_core.tuned", "load_tuned_voice": "deepfake_audio_core.tuned"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepfake_audio' has no attribute {name!r}")


__all__ = ["Pipeline", "CloneResult", "ClonePlan", "ProgressEvent", "DeepfakeAudioError", "AudioError", "TextError",
           "WeightsError", "MissingWeightsError", "RequestError", "TunedVoice", "load_tuned_voice"]
