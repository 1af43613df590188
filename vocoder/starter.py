"""The loaded starter vocoder: (80, T) mel in [-4, 4] -> 16 kHz waveform, a few ms per second of audio.

See `vocoder.starter_model` for the network. This wrapper loads the weights, runs the
network in float32 without gradients, and exposes the pitch the source-filter design
reads off the mel so that a caller can move it (`pitch_shift` in semitones, or
`pitch_target` to speak around a given median F0).
"""
from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from deepfake_audio_core.audio_config import MEL
from deepfake_audio_core.checkpoint import MissingMessage, load_model
from deepfake_audio_core.rng import make_generator
from vocoder.starter_model import ARCHITECTURE, StarterVocoderHParams, StarterVocoderNet
from vocoder.tuning import fingerprint, is_tunable

STARTER_VOCODER_FILE = "starter_vocoder.pt"


def _build(ckpt: dict) -> StarterVocoderNet:
    from deepfake_audio_core.errors import WeightsError
    if ckpt.get("architecture") != ARCHITECTURE:
        raise WeightsError(f"not a starter vocoder checkpoint (architecture {ckpt.get('architecture')!r})")
    known = {f.name for f in fields(StarterVocoderHParams)}
    settings = {k: v for k, v in (ckpt.get("hparams") or {}).items() if k in known}
    return StarterVocoderNet(StarterVocoderHParams(**settings))


class StarterVocoder:
    """A loaded starter vocoder. Thread-safe: no call changes shared state."""

    sample_rate = MEL.sample_rate
    hop_size = MEL.hop_size

    def __init__(self, weights: Path | str, device: str | torch.device = "cpu",
                 missing_message: MissingMessage | None = None):
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.model, _ = load_model(self.weights, _build, "starter vocoder", missing_message)
        self.model.float().to(self.device).eval()

    @property
    def fingerprint(self) -> str:
        """The frozen part's digest (`vocoder.tuning.fingerprint`): a voice's own vocoder fits only this base."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def tuned(self, weights: dict[str, torch.Tensor], base: str, label: str = "a tuned voice's vocoder"
              ) -> "StarterVocoder":
        """A copy of this vocoder with a voice's tuned share (`vocoder.tuning`) in place. `WeightsError`
        where the share was tuned on another base, or does not fit this network."""
        from deepfake_audio_core.errors import WeightsError
        if base != self.fingerprint:
            raise WeightsError(f"{label} was tuned on another starter vocoder ({base[:8]}) than the one loaded "
                               f"({self.fingerprint[:8]}, {self.weights})")
        state = self.model.state_dict()
        blocks = len(self.model.backbone.blocks)
        wrong = [k for k, v in weights.items() if not is_tunable(k, blocks) or k not in state
                 or state[k].shape != v.shape]
        if wrong or not weights:
            raise WeightsError(f"{label} does not fit the loaded starter vocoder (parameter "
                               f"{wrong[0] if wrong else 'none'})")
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin.model.load_state_dict({k: v.to(state[k].dtype) for k, v in weights.items()}, strict=False)
        twin.model.eval()
        return twin

    @property
    def step(self) -> int:
        return int(self.model.step.item())

    @property
    def design(self) -> str:
        return self.model.hp.design

    @torch.inference_mode()
    def pitch(self, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F0 (T,) Hz, voicing probability (T,)) the network reads off `mel` (source-filter design)."""
        features = self.model.backbone(self._tensor(mel))
        log_f0, voicing = self.model.pitch_of(features)
        return torch.exp(log_f0)[0].cpu().numpy(), torch.sigmoid(voicing)[0].cpu().numpy()

    @torch.inference_mode()
    def infer_waveform(self, mel: np.ndarray, seed: int | None = None, pitch_shift: float = 0.0,
                       pitch_target: float | None = None, generator: torch.Generator | None = None) -> np.ndarray:
        """Waveform of `mel` (80, T): float64 (200 * (T - 1),) like the other vocoders, unnormalised.

        `pitch_shift` moves the pitch by that many semitones. `pitch_target` (Hz) first
        moves it so that the median over voiced frames is there (the voice's own pitch).
        Pitch controls need the source-filter design; the istft design ignores them.
        `seed` (or `generator`) fixes the noise source: same inputs, same samples.
        """
        mel_t = self._tensor(mel)
        t = mel_t.size(-1)
        generator = generator or make_generator(seed, self.device)
        noise = torch.randn(1, t * self.hop_size, generator=generator, device=self.device)
        f0 = None
        if self.design == "source_filter" and (pitch_shift or pitch_target):
            log_f0, voicing = self.model.pitch_of(self.model.backbone(mel_t))
            voiced = torch.sigmoid(voicing) > 0.5
            if pitch_target:
                reference = log_f0[voiced].median() if voiced.any() else log_f0.median()
                log_f0 = log_f0 + (float(np.log(pitch_target)) - reference)
            f0 = torch.exp(log_f0 + pitch_shift / 12.0 * float(np.log(2.0)))
            f0 = f0.clamp(self.model.hp.f0_min, self.model.hp.f0_max)
        wav = self.model(mel_t, f0=f0, noise=noise)["wav"][0]
        return wav[:max(0, (t - 1) * self.hop_size)].double().cpu().numpy()

    def _tensor(self, mel: np.ndarray) -> torch.Tensor:
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.model.hp.num_mels:
            raise ValueError(f"expected a mel of shape (80, frames), got {mel.shape}")
        return torch.from_numpy(mel)[None].to(self.device)
