"""A tuned voice: one speaker's fine-tuned share of a synthesizer, in a small file.

Fine-tuning on a few minutes of one voice (`sv2tts-finetune --tuned-voice`, or the
studio's "Train a voice") changes only a subset of the synthesizer's parameters (those
that draw the mel from the speaker: `synthesizer.tuning`). The file keeps that subset
in fp16, the voice's embedding and pitch, and a fingerprint of the base synthesizer
(its frozen parameters), so that the voice is only ever spoken by the model it was
tuned on. A starter voice is about 7 MB, a Tacotron voice about 6 MB. A voice whose job also
tuned the starter vocoder on its recordings, where that brought the clones nearer the voice,
carries that vocoder's tuned share too (`vocoder.tuning`, 2.1 MB more): it speaks this voice only.

Layout (a plain `torch.save` dict, read with `weights_only=True` like every checkpoint):

    format        "deepfake-audio tuned voice"
    version       1
    name          the voice's name
    architecture  "fastspeech" or "tacotron": the base synthesizer's
    base          fingerprint of the base's frozen parameters (`synthesizer.tuning.fingerprint`)
    embedding     (256,) float32, L2-normalised: the mean of the recordings' embeddings
    pitch         {"median_hz": float, "spread": float} or {} where the pitch is unknown
    weights       {parameter name: fp16 tensor}: the tuned subset
    training      {"steps", "seconds", "recorded_seconds", "takes", "base_path", ...}: for the card
    vocoder       optional: {"base": fingerprint of the starter vocoder's frozen part, "weights":
                  {parameter name: fp16 tensor}, "training": {...}}: the voice's own share of it
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepfake_audio_core.checkpoint import read_checkpoint
from deepfake_audio_core.errors import MissingWeightsError, WeightsError

FORMAT = "deepfake-audio tuned voice"
VERSION = 1
SUFFIX = ".tuned.pt"  # what `sv2tts-finetune --tuned-voice` writes and the CLI recognises
MAX_BYTES = 10 * 1024 * 1024  # a tuned voice is a small part of a model, not a copy of it


@dataclass(eq=False)
class TunedVoice:
    """A loaded tuned voice (see the module's notes). Compared by identity: each load is its own."""

    name: str
    architecture: str
    base: str
    embedding: np.ndarray  # (256,) float32
    weights: dict[str, torch.Tensor]  # the tuned parameters, fp16 on disk, as loaded
    pitch_hz: float | None = None  # median F0 of the voice's recordings
    pitch_spread: float | None = None  # spread of their log-F0
    training: dict = field(default_factory=dict)
    path: Path | None = None
    vocoder: dict | None = None  # {"base", "weights", "training"}: its own share of the starter vocoder, or None

    @property
    def parameter_count(self) -> int:
        return sum(int(t.numel()) for t in self.weights.values())

    def save(self, path: Path | str) -> Path:
        """Write the file (atomically: a crash leaves the old one or none). Returns the path."""
        path = Path(path)
        pitch = {} if self.pitch_hz is None else {"median_hz": float(self.pitch_hz),
                                                  "spread": None if self.pitch_spread is None
                                                  else float(self.pitch_spread)}
        data = {"format": FORMAT, "version": VERSION, "name": self.name, "architecture": self.architecture,
                "base": self.base, "embedding": torch.from_numpy(np.asarray(self.embedding, np.float32).copy()),
                "pitch": pitch, "weights": {k: v.detach().to(torch.float16).cpu().contiguous()
                                            for k, v in self.weights.items()},
                "training": dict(self.training)}
        if self.vocoder is not None:
            data["vocoder"] = {"base": str(self.vocoder["base"]),
                               "weights": {k: v.detach().to(torch.float16).cpu().contiguous()
                                           for k, v in self.vocoder["weights"].items()},
                               "training": dict(self.vocoder.get("training") or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(data, tmp)
        tmp.replace(path)
        return path


def is_tuned_voice_file(path: Path | str) -> bool:
    """Whether `path` names a tuned voice by its suffix (the content is checked on loading)."""
    return str(path).lower().endswith(SUFFIX)


def load_tuned_voice(path: Path | str) -> TunedVoice:
    """Read and check a tuned voice file. Raises `WeightsError` saying what is wrong."""
    path = Path(path)
    try:
        data = read_checkpoint(path, lambda p: f"Tuned voice {p} is missing.")
    except MissingWeightsError:
        raise
    except WeightsError as exc:  # empty, truncated, not a checkpoint: said of a tuned voice, not of downloads
        reason = str(exc).removeprefix(f"{path} ").removeprefix("is ").split(": download")[0].rstrip(".")
        raise WeightsError(f"{path} is not a usable tuned voice ({reason}): copy it again, or tune the voice "
                           "again.") from None
    if data.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a tuned voice (made by `sv2tts-finetune --tuned-voice` or the studio's "
                           "Train a voice).")
    if int(data.get("version", 0)) > VERSION:
        raise WeightsError(f"{path} is a tuned voice of a newer version ({data.get('version')}) than this one "
                           f"reads ({VERSION}): update Deepfake Audio.")
    try:
        embedding = np.asarray(data["embedding"], dtype=np.float32).reshape(-1)
        weights = {str(k): v for k, v in dict(data["weights"]).items()}
        pitch = dict(data.get("pitch") or {})
        voice = TunedVoice(str(data["name"]), str(data["architecture"]), str(data["base"]), embedding, weights,
                           None if pitch.get("median_hz") is None else float(pitch["median_hz"]),
                           None if pitch.get("spread") is None else float(pitch["spread"]),
                           dict(data.get("training") or {}), path, _vocoder_of(data.get("vocoder")))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path} is a damaged tuned voice ({exc}): tune the voice again.") from None
    if embedding.shape != (256,) or not np.all(np.isfinite(embedding)):
        raise WeightsError(f"{path} is a damaged tuned voice (its embedding is not 256 finite numbers).")
    if not weights or not all(isinstance(v, torch.Tensor) and torch.isfinite(v).all() for v in weights.values()):
        raise WeightsError(f"{path} is a damaged tuned voice (its weights are missing or not finite).")
    if voice.vocoder is not None and not all(isinstance(v, torch.Tensor) and torch.isfinite(v).all()
                                             for v in voice.vocoder["weights"].values()):
        raise WeightsError(f"{path} is a damaged tuned voice (its vocoder's weights are not finite).")
    return voice


def _vocoder_of(entry) -> dict | None:
    """A file's "vocoder" entry as `TunedVoice.vocoder` (None where it has none)."""
    if entry is None:
        return None
    entry = dict(entry)
    weights = {str(k): v for k, v in dict(entry["weights"]).items()}
    if not weights:
        raise ValueError("its vocoder has no weights")
    return {"base": str(entry["base"]), "weights": weights, "training": dict(entry.get("training") or {})}
