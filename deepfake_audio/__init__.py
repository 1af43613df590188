"""Deepfake Audio: SV2TTS voice cloning compatible with the published checkpoints.

    from deepfake_audio import Pipeline
    pipe = Pipeline()                       # loads saved_models/default once
    result = pipe.clone("voice.wav", "Hello there.", seed=1)
    result.wav, result.sample_rate          # float32 audio at 16 kHz

Layers (imports only point down): `deepfake_audio_core` (the base), the stages `encoder`,
`synthesizer` and `vocoder`, the services (download, watermark, script, perth_compat),
`pipeline` (where they meet), the runners (streaming, batch) and on top the CLI, the
studio and `training`. The base and the stages are top-level packages that never import
this one, so the pipeline's public names are imported here directly.
"""
from __future__ import annotations

from deepfake_audio.pipeline import ClonePlan, CloneResult, Pipeline, ProgressEvent
from deepfake_audio_core.errors import (AudioError, DeepfakeAudioError, MissingWeightsError, RequestError, TextError,
                                        WeightsError)
from deepfake_audio_core.tuned import TunedVoice, load_tuned_voice

__all__ = ["Pipeline", "CloneResult", "ClonePlan", "ProgressEvent", "DeepfakeAudioError", "AudioError", "TextError",
           "WeightsError", "MissingWeightsError", "RequestError", "TunedVoice", "load_tuned_voice"]
