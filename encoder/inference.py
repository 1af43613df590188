"""Speaker embeddings from audio with a loaded `SpeakerEncoder`.

The partial-utterance scheme follows the reference exactly: the utterance is cut into
160-frame (1.6 s) windows overlapping by 50 %, each is embedded, and the mean of the
partial embeddings is L2-normalised.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from deepfake_audio_core.checkpoint import MissingMessage, load_model
from deepfake_audio_core.errors import AudioError, MissingWeightsError
from deepfake_audio_core.threads import intra_op_threads
from encoder.hparams import hparams as hp
from encoder.audio import (clean_reference, normalize_volume, preprocess_wav, trim_long_silences, webrtcvad,
                           wav_to_mel_spectrogram)
from encoder.model import speaker_encoder_from_hparams

MIN_SPEECH_SECONDS = 1.0
# Peak below this (about -80 dBFS) is treated as digital silence.
SILENCE_PEAK = 1e-4


def default_weights_path() -> Path:
    """The official encoder checkpoint shipped inside the `resemblyzer` wheel (no network)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            "The default speaker encoder weights come with the `resemblyzer` package, which is not "
            "installed: run `pip install --no-deps resemblyzer==0.1.4` (or pass an encoder.pt).")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise MissingWeightsError(f"The resemblyzer package has no pretrained.pt at {path}; reinstall it "
                                  "with `pip install --no-deps --force-reinstall resemblyzer==0.1.4`.")
    return path


def compute_partial_slices(n_samples: int, partial_utterance_n_frames: int = hp.partials_n_frames,
                           min_pad_coverage: float = 0.75, overlap: float = 0.5) -> tuple[list[slice], list[slice]]:
    """Wav and mel slices of the partial utterances of an `n_samples`-long 16 kHz utterance.

    Partials are `partial_utterance_n_frames` mel frames long and start every
    `(1 - overlap)` of that. The last one is dropped when less than `min_pad_coverage`
    of it lies inside the audio, unless it is the only one.
    """
    assert 0 <= overlap < 1 and 0 < min_pad_coverage <= 1
    samples_per_frame = int(hp.sampling_rate * hp.mel_window_step / 1000)
    n_frames = int(np.ceil((n_samples + 1) / samples_per_frame))
    frame_step = max(int(np.round(partial_utterance_n_frames * (1 - overlap))), 1)
    steps = max(1, n_frames - partial_utterance_n_frames + frame_step + 1)
    mel_slices = [slice(i, i + partial_utterance_n_frames) for i in range(0, steps, frame_step)]
    wav_slices = [slice(s.start * samples_per_frame, s.stop * samples_per_frame) for s in mel_slices]
    last = wav_slices[-1]
    coverage = (n_samples - last.start) / (last.stop - last.start)
    if coverage < min_pad_coverage and len(mel_slices) > 1:
        mel_slices, wav_slices = mel_slices[:-1], wav_slices[:-1]
    return wav_slices, mel_slices


# Partials up to which the encoder's LSTM runs on one thread (about 30 s of audio).
ONE_THREAD_PARTIALS = 40


class Encoder:
    """A loaded speaker encoder: audio -> 256-d unit-norm voice embedding."""

    def __init__(self, weights: Path | str | None = None, device: str | torch.device = "cpu",
                 missing_message: MissingMessage | None = None):
        self.weights = Path(weights) if weights is not None else default_weights_path()
        self.device = torch.device(device)
        # A trained checkpoint of a non-published size says how big it is under "hparams".
        self.model, ckpt = load_model(self.weights, lambda c: speaker_encoder_from_hparams(c.get("hparams")),
                                      "speaker encoder", missing_message)
        self.step = int(ckpt.get("step", 0))
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def embed_frames_batch(self, frames_batch: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) float32 mel -> (batch, 256) float32 embeddings."""
        frames = torch.from_numpy(np.ascontiguousarray(frames_batch, dtype=np.float32)).to(self.device)
        # On a CPU, torch's LSTM on a few partials ran twice as fast on one intra-op thread as
        # on two, with the same numbers (a 3 s reference, loaded pipeline: 21-24 against
        # 32-54 ms; 10 s: 55-62 against 103-115 ms; 30 s, 40 partials: even).
        one = self.device.type == "cpu" and len(frames_batch) <= ONE_THREAD_PARTIALS
        with intra_op_threads(1 if one else 0):
            return self.model(frames).cpu().numpy()

    def embed_utterance(self, wav: np.ndarray, return_partials: bool = False):
        """Embedding of one preprocessed utterance (16 kHz float32): (256,) float32 with norm 1.

        With `return_partials`, also returns the (n_partials, 256) partial embeddings
        and the wav slices they cover.
        """
        wav_slices, mel_slices = compute_partial_slices(len(wav))
        max_wave_length = wav_slices[-1].stop
        if max_wave_length >= len(wav):
            wav = np.pad(wav, (0, max_wave_length - len(wav)), "constant")
        frames = wav_to_mel_spectrogram(wav)
        frames_batch = np.array([frames[s] for s in mel_slices])
        partial_embeds = self.embed_frames_batch(frames_batch)
        raw_embed = np.mean(partial_embeds, axis=0)
        norm = np.linalg.norm(raw_embed, 2)
        if not np.isfinite(norm) or norm == 0:
            raise AudioError("The speaker encoder produced no usable embedding for this audio; "
                             "use a clearer recording of speech.")
        embed = raw_embed / norm
        if return_partials:
            return embed, partial_embeds, wav_slices
        return embed

    def embed_speaker(self, wavs: list[np.ndarray]) -> np.ndarray:
        """One embedding for several utterances of a speaker: normalised mean of theirs."""
        raw = np.mean([self.embed_utterance(w) for w in wavs], axis=0)
        return raw / np.linalg.norm(raw, 2)


def prepare_reference(fpath_or_wav: str | Path | np.ndarray, source_sr: int | None = None,
                      min_speech_seconds: float = MIN_SPEECH_SECONDS, clean: bool = False) -> np.ndarray:
    """Preprocess a reference recording for cloning, rejecting unusable audio with `AudioError`.

    Same processing as `preprocess_wav`, plus checks the reference does not make: the
    audio must not be silent and must keep at least `min_speech_seconds` of speech after
    silence trimming. `clean` first reduces noise and band-limits it (`clean_reference`).
    Returns 16 kHz float32 (samples,).
    """
    if isinstance(fpath_or_wav, (str, Path)):
        wav = preprocess_wav(fpath_or_wav, normalize=False, trim_silence=False)
        name = Path(fpath_or_wav).name
    else:
        wav = preprocess_wav(np.asarray(fpath_or_wav, dtype=np.float32), source_sr,
                             normalize=False, trim_silence=False)
        name = "The reference audio"
    if wav.size == 0:
        raise AudioError(f"{name} contains no audio.")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{name} contains invalid (NaN or infinite) samples.")
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(f"{name} is silent: record or upload a few seconds of someone speaking.")
    if clean:
        wav = clean_reference(wav)
    wav = normalize_volume(wav, hp.audio_norm_target_dBFS, increase_only=True)
    if webrtcvad is not None:
        wav = trim_long_silences(wav)
    speech = len(wav) / hp.sampling_rate
    if speech < min_speech_seconds:
        raise AudioError(f"{name} has only {speech:.1f} s of speech after removing silence; "
                         f"at least {min_speech_seconds:.0f} s is needed (5-10 s works best).")
    return wav
