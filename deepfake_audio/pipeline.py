"""The SV2TTS chain in one object: reference voice + text -> cloned speech.

`Pipeline` loads the encoder, synthesizer and vocoder once and is then safe to call
from several threads: no call mutates shared state, and every random draw comes from a
generator private to that call. The CLI, the Python API and the studio all use it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from deepfake_audio.download import DEFAULT_MODELS_DIR, STARTER_MODELS_DIR, missing_weights_message
from deepfake_audio.errors import MissingWeightsError, TextError
from encoder.inference import Encoder, default_weights_path, prepare_reference
from synthesizer.audio import griffin_lim
from synthesizer.hparams import hparams as syn_hp
from synthesizer.inference import Synthesizer
from synthesizer.sentences import split_sentences
from synthesizer.text import has_speakable_characters, text_to_sequence
from vocoder import hparams as vocoder_hp
from vocoder.inference import Vocoder

VocoderName = Literal["auto", "wavernn", "griffinlim"]
# Griffin-Lim outside parity mode: the fast variant (momentum 0.99) in 32 iterations. On
# the held-out corpus voices' own mels (100 sentences) pocketsphinx's word error rate was
# 20.5 % with it against 21.7 % for the reference's 60 plain iterations (14.3 % on the
# recordings themselves), in about half the time.
FAST_GRIFFIN_LIM = {"momentum": 0.99, "iterations": 32}
VOCODERS: tuple[str, ...] = ("wavernn", "griffinlim")
SAMPLE_RATE = syn_hp.sample_rate
MAX_TEXT_CHARS = 5000
SENTENCE_PAUSE_SECONDS = 0.15
OUTPUT_PEAK = 0.97

# progress(stage, fraction in [0, 1], detail); stage is "encoding", "synthesizing" or "vocoding".
ProgressFn = Callable[[str, float, str], None]


def _no_progress(stage: str, fraction: float, detail: str) -> None:
    pass


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def models_folder(models_dir: Path | str | None = None) -> Path:
    """The models folder: the argument, else $DEEPFAKE_AUDIO_MODELS, else saved_models/default."""
    return Path(models_dir or os.environ.get("DEEPFAKE_AUDIO_MODELS") or DEFAULT_MODELS_DIR)


def encoder_weights(models_dir: Path) -> Path:
    """`encoder.pt` of the folder when present, else the official encoder bundled with resemblyzer."""
    path = models_dir / "encoder.pt"
    return path if path.is_file() else default_weights_path()


@dataclass
class CloneResult:
    """Output of `Pipeline.clone`."""

    wav: np.ndarray  # float32 (samples,) at `sample_rate`, peak-normalised to 0.97
    sample_rate: int
    embedding: np.ndarray  # (256,) speaker embedding of the reference
    mels: list[np.ndarray]  # one (80, frames) mel per sentence
    sentences: list[str]
    vocoder: str
    seconds: dict[str, float] = field(default_factory=dict)  # compute time per stage

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Compute time divided by audio duration (below 1 is faster than real time)."""
        return sum(self.seconds.values()) / max(self.duration, 1e-9)


class Pipeline:
    """Encoder + synthesizer + vocoder, loaded once.

    Weights come from `models_dir` (default `saved_models/default/`): `encoder.pt`
    (optional: the official encoder bundled with the `resemblyzer` package is the
    fallback), `synthesizer.pt` and `vocoder.pt`. Explicit paths override the folder.
    Where the folder lacks a synthesizer or vocoder, the small starter models shipped in
    `saved_models/starter/` stand in (unless `starter=False`); `describe` says which
    weights are in use. Still-missing weights are not an error at load time: the calls
    that need them raise `MissingWeightsError` saying which file is missing and how to
    fetch it, and Griffin-Lim works without a vocoder. Corrupt or mismatched files
    raise `WeightsError` here.
    """

    def __init__(self, models_dir: Path | str | None = None, *, encoder: Path | str | None = None,
                 synthesizer: Path | str | None = None, vocoder: Path | str | None = None,
                 device: str | None = None, starter: bool = True):
        self.models_dir = models_folder(models_dir)
        self.device = torch.device(device or default_device())
        self.encoder_path = Path(encoder) if encoder else encoder_weights(self.models_dir)
        self.synthesizer_path = Path(synthesizer) if synthesizer else self._weights("synthesizer.pt", starter)
        self.vocoder_path = Path(vocoder) if vocoder else self._weights("vocoder.pt", starter)
        self.encoder = Encoder(self.encoder_path, self.device)
        self.synthesizer = self._load_if_present(Synthesizer, self.synthesizer_path, explicit=synthesizer)
        self.vocoder = self._load_if_present(Vocoder, self.vocoder_path, explicit=vocoder)

    def _weights(self, name: str, starter: bool) -> Path:
        """`name` in the models folder; else the starter model of that name when one is shipped."""
        path = self.models_dir / name
        if not path.is_file() and starter and (STARTER_MODELS_DIR / name).is_file():
            return STARTER_MODELS_DIR / name
        return path

    def is_starter(self, stage: str) -> bool:
        """Whether `stage` ("synthesizer" or "vocoder") runs on a shipped starter model."""
        path = {"synthesizer": self.synthesizer_path, "vocoder": self.vocoder_path}[stage]
        # The folder, not the file, is resolved: a starter file may be a link to elsewhere.
        return path.is_file() and path.absolute().parent.resolve() == STARTER_MODELS_DIR.resolve()

    def default_vocoder(self) -> str:
        """WaveRNN when its weights are loaded, else Griffin-Lim."""
        return "wavernn" if self.vocoder is not None else "griffinlim"

    def _load_if_present(self, cls, path: Path, explicit):
        if not path.is_file():
            if explicit:  # a path the caller named must exist
                raise MissingWeightsError(missing_weights_message(path))
            return None
        return cls(path, self.device)

    def describe(self) -> dict[str, str]:
        """Which weights each stage uses, in words."""
        def loaded(stage: str, path: Path, model) -> str:
            if self.is_starter(stage):
                official = self.models_dir / path.name
                return (f"starter model {path} (step {model.step}; small, trained on synthetic voices: for "
                        f"real cloning put the official {path.name} in {official.parent})")
            return f"{path} (step {model.step})"
        return {
            "encoder": f"{self.encoder_path} (step {self.encoder.step})",
            "synthesizer": loaded("synthesizer", self.synthesizer_path, self.synthesizer) if self.synthesizer
            else f"missing: {missing_weights_message(self.synthesizer_path)}",
            "vocoder": loaded("vocoder", self.vocoder_path, self.vocoder) if self.vocoder
            else f"Griffin-Lim (no WaveRNN weights; {missing_weights_message(self.vocoder_path)})",
        }

    def embed(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Speaker embedding (256,) float32 of a recording (path, or array at `sample_rate`)."""
        return self.encoder.embed_utterance(prepare_reference(audio, sample_rate))

    def synthesize(self, texts: str | Sequence[str], embedding: np.ndarray, seed: int | None = None,
                   progress: ProgressFn = _no_progress, mode: str = "parity") -> list[np.ndarray]:
        """Mels (80, frames) for each text, all spoken with `embedding`.

        Each text is used as one utterance (no splitting): this is the reference's
        behaviour. `clone` splits long text into sentences first. `mode` "fast" runs the
        decoder's LSTMs with fp16 weights, "int8" with int8 weights (see `synthesizer.fast`);
        "parity" is the reference.
        """
        synthesizer = self._require_synthesizer()
        texts = [texts] if isinstance(texts, str) else list(texts)
        embedding = np.asarray(embedding, dtype=np.float32)
        if embedding.shape != (256,) or not np.all(np.isfinite(embedding)):
            raise ValueError(f"the speaker embedding must be 256 finite numbers, got shape {embedding.shape}")
        return synthesizer.synthesize_spectrograms(
            texts, [embedding] * len(texts), seed=seed, mode=mode,
            progress=lambda done, total: progress("synthesizing", done / total,
                                                  f"sentence {done} of {total}"))

    def vocode(self, mel: np.ndarray, vocoder: VocoderName = "wavernn", seed: int | None = None,
               progress: ProgressFn = _no_progress, mode: str = "fast") -> np.ndarray:
        """Waveform (float64, 200 * (frames - 1) samples at 16 kHz) of one mel, unnormalised.

        WaveRNN runs the reference's batched generation (folds of 8000 + 2 x 800 samples)
        when the mel spans more than one fold, else unbatched; `Vocoder.infer_waveform`
        gives direct control. `mode` is WaveRNN's: "fast" (default), "int8", or "parity"
        (the reference's numbers exactly, several times slower).
        """
        if vocoder == "griffinlim":
            rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
            wav = griffin_lim(mel, rng=rng, **({} if mode == "parity" else FAST_GRIFFIN_LIM))
            progress("vocoding", 1.0, "Griffin-Lim")
            return wav
        if vocoder != "wavernn":
            raise ValueError(f"unknown vocoder {vocoder!r}: choose one of {', '.join(VOCODERS)}")
        if self.vocoder is None:
            raise MissingWeightsError(missing_weights_message(self.vocoder_path)
                                      + " (or choose the Griffin-Lim vocoder, which needs no weights)")
        # Folding pays off only when there is more than one fold; a short mel is cheaper
        # in one unfolded pass than padded up to a full 9600-sample fold.
        batched = mel.shape[1] * syn_hp.hop_size > vocoder_hp.voc_target + 2 * vocoder_hp.voc_overlap
        return self.vocoder.infer_waveform(
            mel, batched=batched, seed=seed, mode=mode,
            progress=lambda done, total: progress("vocoding", done / total, f"{100 * done // total}%"))

    def clone(self, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
              seed: int | None = None, vocoder: VocoderName = "auto", *,
              embedding: np.ndarray | None = None, sample_rate: int | None = None,
              progress: ProgressFn = _no_progress, mode: str = "fast") -> CloneResult:
        """Speak `text` in the voice of `reference_audio` (or of a saved `embedding`).

        Long text is split into sentences, synthesized in batches and vocoded in one
        pass, with short pauses between sentences. Same seed, same inputs: same audio.
        `vocoder` "auto" is WaveRNN when its weights are loaded, else Griffin-Lim.
        `mode` "fast" (default: fp16 synthesizer cells) or "int8" (int8 cells) set the
        synthesizer's and WaveRNN's precision;
        "parity" gives the reference's numbers (see `vocode`). `deepfake_audio.streaming`
        streams the result.
        """
        sentences = self.prepare_text(text)
        self._require_synthesizer()
        if vocoder == "auto":
            vocoder = self.default_vocoder()
        if vocoder not in VOCODERS:
            raise ValueError(f"unknown vocoder {vocoder!r}: choose one of {', '.join(VOCODERS)}")
        if vocoder == "wavernn" and self.vocoder is None:
            self.vocode(np.zeros((80, 2), np.float32), vocoder)  # raises the missing-weights message
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        progress("encoding", 0.0, "reading the reference voice")
        if embedding is None:
            if reference_audio is None:
                raise ValueError("give a reference recording or a saved embedding")
            embedding = self.embed(reference_audio, sample_rate)
        progress("encoding", 1.0, "voice embedded")
        seconds["encoding"] = time.perf_counter() - start

        start = time.perf_counter()
        progress("synthesizing", 0.0, f"{len(sentences)} sentence(s)")
        mels = self.synthesize(sentences, embedding, seed, progress, mode)
        seconds["synthesizing"] = time.perf_counter() - start

        start = time.perf_counter()
        progress("vocoding", 0.0, "0%")
        wav = self._vocode_sentences(mels, vocoder, seed, progress, mode)
        seconds["vocoding"] = time.perf_counter() - start
        return CloneResult(wav, SAMPLE_RATE, np.asarray(embedding, np.float32), mels, sentences, vocoder, seconds)

    @staticmethod
    def prepare_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> list[str]:
        """Validate `text` and split it into sentences; raises `TextError` when nothing can be said."""
        if text is None or not str(text).strip():
            raise TextError("The text is empty: type what the voice should say.")
        if len(text) > max_chars:
            raise TextError(f"The text is {len(text)} characters long; the limit is {max_chars}. "
                            "Split it into several requests.")
        sentences = [s for s in split_sentences(text) if has_speakable_characters(text_to_sequence(s))]
        if not sentences:
            raise TextError("The text has no speakable characters: write English words "
                            "(letters; digits are read out as numbers).")
        return sentences

    def _vocode_sentences(self, mels: list[np.ndarray], vocoder: str, seed: int | None,
                          progress: ProgressFn, mode: str = "fast") -> np.ndarray:
        pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * SAMPLE_RATE))
        hop = syn_hp.hop_size
        if vocoder == "wavernn":
            # One pass over the joined mels keeps the vocoder's folds full; then cut at the joins.
            wav = self.vocode(np.concatenate(mels, axis=1), "wavernn", seed, progress, mode)
            cuts = np.cumsum([m.shape[1] for m in mels])[:-1] * hop
            pieces = np.split(wav, np.minimum(cuts, len(wav)))
        else:
            pieces = []
            for k, mel in enumerate(mels):
                pieces.append(self.vocode(mel, "griffinlim", None if seed is None else seed + k, mode=mode))
                progress("vocoding", (k + 1) / len(mels), f"sentence {k + 1} of {len(mels)}")
        joined = np.concatenate([part for piece in pieces for part in (piece, pause)][:-1])
        peak = np.max(np.abs(joined)) if joined.size else 0.0
        if peak > 0:
            joined = joined / peak * OUTPUT_PEAK
        return joined.astype(np.float32)

    def _require_synthesizer(self) -> Synthesizer:
        if self.synthesizer is None:
            raise MissingWeightsError(missing_weights_message(self.synthesizer_path))
        return self.synthesizer
