"""The SV2TTS chain in one object: reference voice + text -> cloned speech.

This is the one place where the three stages meet. `Pipeline` loads the encoder,
synthesizer and vocoder once and is then safe to call from several threads: no call
mutates shared state, and every random draw comes from a generator private to that call.
The CLI, the Python API, streaming and the studio all go through it.

A clone request is checked once, by `Pipeline.plan`, and turned into a `ClonePlan`
(sentences, their character ids, the vocoder, the seed, the mode and the voice
embedding); `Pipeline.run` and `deepfake_audio.streaming` carry a plan out. Progress is
reported as `ProgressEvent`s (stage, done, total), never as text to be parsed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from deepfake_audio_core.errors import AudioError, MissingWeightsError, RequestError, TextError, WeightsError
from deepfake_audio_core.modes import check_mode
from deepfake_audio_core.rng import make_generator
from deepfake_audio_core.threads import use_user_threads
from deepfake_audio.assembly import Timeline
from deepfake_audio.download import STARTER_MODELS_DIR, missing_weights_message, models_folder
from deepfake_audio.script import Part, check_pauses, has_markup, parse_script
from deepfake_audio.watermark import embed_watermark, load_watermarker, watermark_enabled
from encoder.audio import at_power_dbfs, power_dbfs, preprocess_wav
from encoder.hparams import hparams as encoder_hp
from encoder.inference import Encoder, default_weights_path, prepare_reference
from encoder.speaker_turns import main_speaker
from encoder.voice_pitch import VOICE_PITCH_FILE, VoicePitch
from deepfake_audio_core.requests import check_pace, check_pitch, check_vocoder
from deepfake_audio_core.embedding_memory import EmbeddingMemory
from deepfake_audio_core.pitch import PitchMemory, not_speech, pitch_stats
from deepfake_audio_core.tuned import TunedVoice
from synthesizer.audio import griffin_lim
from synthesizer.hparams import hparams as syn_hp
from synthesizer.inference import PitchRequest, Synthesizer
from synthesizer.postnet_blocks import PostnetLane
from synthesizer.sentences import split_sentences
from synthesizer.text import has_speakable_characters, text_to_sequence
from vocoder.hparams import hparams as vocoder_hp
from vocoder.inference import Vocoder
from vocoder.rolling import MelTimeline, StreamStats
from vocoder.starter import STARTER_VOCODER_FILE, StarterVocoder

logger = logging.getLogger(__name__)

VocoderName = Literal["auto", "wavernn", "starter", "griffinlim"]
# Griffin-Lim outside parity mode: the fast variant (momentum 0.99) in 32 iterations. On
# the held-out corpus voices' own mels (100 sentences) pocketsphinx's word error rate was
# 20.5 % with it against 21.7 % for the reference's 60 plain iterations (14.3 % on the
# recordings themselves), in about half the time.
FAST_GRIFFIN_LIM = {"momentum": 0.99, "iterations": 32}
VOCODER_LABELS = {"wavernn": "WaveRNN", "starter": "starter vocoder", "griffinlim": "Griffin-Lim"}
# Vocoders that make each sentence on its own (the others vocode the joined mels in one pass).
PER_SENTENCE_VOCODERS = ("starter", "griffinlim")
SAMPLE_RATE = syn_hp.sample_rate
HOP_SIZE = syn_hp.hop_size
MAX_TEXT_CHARS = 5000
SENTENCE_PAUSE_SECONDS = 0.15
EMBEDDING_SIZE = 256
# A result shorter than this after trimming is embedded untrimmed (see `embed_output`).
MIN_OUTPUT_SPEECH_SECONDS = 0.5
# Synthesizers with a tuned voice's weights kept ready (each a copy of the loaded one: 27 MB for
# the starter, 124 MB for the Tacotron); a script rarely speaks more tuned voices than this.
TUNED_SYNTHESIZERS_KEPT = 3
# A saved voice: its embedding, or a tuned voice (which brings its own embedding and weights).
Voice = np.ndarray | TunedVoice


@dataclass(frozen=True)
class ProgressEvent:
    """How far a stage has come: `done` of `total` units.

    stage: "encoding", "synthesizing" or "vocoding". unit: "step" (encoding; WaveRNN's
    generation steps, so done / total is the fraction) or "sentence" (synthesis, and
    Griffin-Lim, which vocodes sentence by sentence). `done` 0 opens a stage.
    """

    stage: str
    done: int
    total: int
    unit: str = "step"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    pass


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def encoder_weights(models_dir: Path) -> Path:
    """`encoder.pt` of the folder when present, else the official encoder bundled with resemblyzer."""
    path = models_dir / "encoder.pt"
    return path if path.is_file() else default_weights_path()


def cosine_similarity(a, b) -> float:
    """Cosine of the angle between two embeddings, in [-1, 1] (0 when either is all zeros).

    The encoder's embeddings come out of a ReLU, so two of them score in [0, 1].
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


def check_embedding(embedding) -> np.ndarray:
    """A voice embedding as (256,) float32; `RequestError` when it is not 256 finite numbers."""
    array = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if array.shape != (EMBEDDING_SIZE,) or not np.all(np.isfinite(array)):
        raise RequestError(f"A voice embedding must be {EMBEDDING_SIZE} finite numbers, got shape "
                           f"{np.shape(embedding)}.")
    return array


@dataclass(frozen=True)
class Script:
    """A request's text, checked: its sentences, their character ids, who speaks each, and the silences."""

    sentences: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]  # character ids of each sentence (cleaned, EOS appended)
    voices: tuple[str | None, ...]  # a saved voice's name per sentence, None for the request's own voice
    gaps: tuple[float, ...]  # seconds of silence after each sentence (the last: only an explicit pause)
    lead: float = 0.0  # seconds of silence before the first sentence


@dataclass(frozen=True)
class ClonePlan:
    """A checked clone request: everything `Pipeline.run` and streaming need, decided once."""

    sentences: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]  # character ids of each sentence (cleaned, EOS appended)
    vocoder: str  # "wavernn", "starter" or "griffinlim", resolved
    seed: int | None
    mode: str  # "fast", "int8", "fp16" or "parity" (`deepfake_audio_core.modes`)
    embedding: np.ndarray  # (256,) float32: the request's voice (that of the first sentence for a script)
    note: str = ""  # why the vocoder differs from the one asked for (or the pitch was kept), or ""
    pace: float = 1.0  # speaking rate, 0.5 to 2.0
    sentence_embeddings: tuple[np.ndarray, ...] = ()  # the voice of each sentence (default: `embedding`)
    gaps: tuple[float, ...] = ()  # silence after each sentence, s (default: the usual short pause)
    lead: float = 0.0  # silence before the first sentence, s
    pitch: float = 0.0  # semitones up (+) or down (-): the starter vocoder, a pitch-conditioned synthesizer
    pitch_hz: float | None = None  # median F0 of the request's voice, Hz (None: the mel's own pitch)
    pitch_spread: float | None = None  # spread of its log-F0 (`core.pitch.pitch_stats`) where measured
    sentence_pitch_hz: tuple[float | None, ...] = ()  # per sentence, when a script has several voices
    tuned: TunedVoice | None = None  # the request's voice when it is a tuned voice (`core.tuned`)
    sentence_tuned: tuple[TunedVoice | None, ...] = ()  # per sentence, when a script has several voices

    def groups(self) -> list[list[int]]:
        """Sentences synthesized together, in order. Parity mode: all in one batch, as the
        reference. Otherwise the first sentence alone (so that a stream can start on it
        early), then the second alone, then groups twice the size of the one before (2, 4,
        8, ...): a batch's decoder steps cost more the larger it is and its first sentence
        comes only as fast as they go, so a stream starts each batch with more audio ahead of
        the player the larger the batch. `run` and streaming make the same groups, so a seed
        gives the same mels either way."""
        n = len(self.sentences)
        if self.mode == "parity" or n == 1:
            return [list(range(n))]
        out, start, size = [[0]], 1, 1
        while start < n:
            out.append(list(range(start, min(n, start + size))))
            start, size = start + size, 2 * size
        return out

    @property
    def rolling(self) -> bool:
        """Whether a stream of this plan runs the WaveRNN's rolling folds (`vocoder.rolling`): in the fast modes."""
        return self.vocoder == "wavernn" and self.mode != "parity"

    def sentence_seed(self, k: int) -> int | None:
        """Seed of sentence k for the vocoders that go a sentence at a time (Griffin-Lim's phases, the
        starter vocoder's noise)."""
        return None if self.seed is None else self.seed + k

    def voice_of(self, k: int) -> np.ndarray:
        return self.sentence_embeddings[k] if self.sentence_embeddings else self.embedding

    def tuned_of(self, k: int) -> TunedVoice | None:
        """The tuned voice that speaks sentence k, None for the loaded synthesizer as it is."""
        return self.sentence_tuned[k] if self.sentence_tuned else self.tuned

    def pitch_hz_of(self, k: int) -> float | None:
        return self.sentence_pitch_hz[k] if self.sentence_pitch_hz else self.pitch_hz

    def pitch_request(self, k: int) -> PitchRequest:
        """What a pitch-conditioned synthesizer is asked for sentence k (the spread is the
        request's own voice's, where measured)."""
        own = not self.sentence_pitch_hz or self.sentence_pitch_hz[k] == self.pitch_hz
        return PitchRequest(self.pitch_hz_of(k), self.pitch_spread if own else None, self.pitch)

    def gap_after(self, k: int) -> float:
        if self.gaps:
            return self.gaps[k]
        return SENTENCE_PAUSE_SECONDS if k < len(self.sentences) - 1 else 0.0


@dataclass
class CloneResult:
    """Output of `Pipeline.clone`, and of a finished stream (`CloneStream.result`)."""

    wav: np.ndarray  # float32 (samples,) at `sample_rate`, watermarked; peak 0.97 (a stream's: at most 0.97)
    sample_rate: int
    embedding: np.ndarray  # (256,) speaker embedding of the reference
    mels: list[np.ndarray]  # one (80, frames) mel per sentence
    sentences: list[str]
    vocoder: str
    seconds: dict[str, float] = field(default_factory=dict)  # compute time per stage
    note: str = ""  # what the plan changed or noticed (`ClonePlan.note`: a vocoder stood in, a second voice), or ""

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Compute time divided by audio duration (below 1 is faster than real time)."""
        return sum(self.seconds.values()) / max(self.duration, 1e-9)


@dataclass
class RollingParts:
    """What a stream of a plan with rolling WaveRNN folds (`ClonePlan.rolling`) runs beside the pipeline's
    models: the mel frames shared by synthesizer and vocoder as they are made, the vocoder's account of
    the frames it needed, the post-net blocks done beside the decoder, and the mels' scale for the vocoder."""

    timeline: MelTimeline
    stats: StreamStats
    lane: PostnetLane  # later post-net blocks beside the decoder (int8), done before each chunk of vocoding
    scale: float  # the vocoder reads mels scaled to [-1, 1]: multiply the synthesizer's by this


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
    raise `WeightsError` here. `stages` limits what is loaded (e.g. ("encoder",) to embed
    voices only).
    """

    def __init__(self, models_dir: Path | str | None = None, *, encoder: Path | str | None = None,
                 synthesizer: Path | str | None = None, vocoder: Path | str | None = None,
                 device: str | None = None, starter: bool = True,
                 stages: Sequence[str] = ("encoder", "synthesizer", "vocoder"), watermark: bool | None = None):
        self.models_dir = models_folder(models_dir)
        # Every clone is watermarked unless turned off (see `deepfake_audio.watermark`).
        self.watermark = watermark_enabled() if watermark is None else bool(watermark)
        self.device = torch.device(device or default_device())
        self.encoder_path = Path(encoder) if encoder else encoder_weights(self.models_dir)
        self.synthesizer_path = Path(synthesizer) if synthesizer else self._weights("synthesizer.pt", starter)
        self.vocoder_path = Path(vocoder) if vocoder else self._weights("vocoder.pt", starter)
        self.encoder = Encoder(self.encoder_path, self.device, missing_weights_message)
        self.synthesizer = self._load_if_present(Synthesizer, self.synthesizer_path, synthesizer) \
            if "synthesizer" in stages else None
        self.vocoder = self._load_if_present(Vocoder, self.vocoder_path, vocoder) if "vocoder" in stages else None
        self.starter_vocoder_path = self._weights(STARTER_VOCODER_FILE, starter)
        self.starter_vocoder = self._load_if_present(StarterVocoder, self.starter_vocoder_path, None) \
            if "vocoder" in stages else None
        self._heard_pitch = PitchMemory()  # pitch of the recordings behind the embeddings `embed` made
        # speech level (dBFS) of the same recordings, so a result is compared with its voice at its level
        self._heard_level: EmbeddingMemory[float] = EmbeddingMemory()
        # what a caller should know of the recordings behind them (`embed`: a second voice in it)
        self._reference_notes: EmbeddingMemory[str] = EmbeddingMemory()
        self._tuned: OrderedDict[int, tuple[TunedVoice, Synthesizer]] = OrderedDict()  # most recent last
        self._tuned_vocoders: OrderedDict[int, tuple[TunedVoice, StarterVocoder]] = OrderedDict()  # likewise
        self._tuned_lock = threading.Lock()
        # A saved voice's pitch, from its embedding, for the starter vocoder (no recording to measure).
        self.voice_pitch = self._load_if_present(VoicePitch, self._weights(VOICE_PITCH_FILE, starter), None) \
            if self.starter_vocoder is not None else None
        if self.watermark and self.synthesizer is not None:
            load_watermarker()
        elif not self.watermark:
            logger.warning("Watermarking is off (DEEPFAKE_AUDIO_WATERMARK=0): clones are not marked as generated")

    def _weights(self, name: str, starter: bool) -> Path:
        """`name` in the models folder; else the starter model of that name when one is shipped."""
        path = self.models_dir / name
        if not path.is_file() and starter and (STARTER_MODELS_DIR / name).is_file():
            return STARTER_MODELS_DIR / name
        return path

    def is_starter(self, stage: str) -> bool:
        """Whether `stage` ("synthesizer", "vocoder" or "starter_vocoder") runs on a shipped starter model."""
        path = {"synthesizer": self.synthesizer_path, "vocoder": self.vocoder_path,
                "starter_vocoder": self.starter_vocoder_path}[stage]
        # The folder, not the file, is resolved: a starter file may be a link to elsewhere.
        return path.is_file() and path.absolute().parent.resolve() == STARTER_MODELS_DIR.resolve()

    def default_vocoder(self) -> str:
        """WaveRNN when its weights are loaded, else the starter vocoder, else Griffin-Lim."""
        if self.vocoder is not None:
            return "wavernn"
        return "starter" if self.starter_vocoder is not None else "griffinlim"

    def _load_if_present(self, cls, path: Path, explicit):
        if not path.is_file():
            if explicit:  # a path the caller named must exist
                raise MissingWeightsError(missing_weights_message(path))
            return None
        if cls is VoicePitch:
            return cls(path, missing_message=missing_weights_message)
        return cls(path, self.device, missing_message=missing_weights_message)

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
            else f"{self._stand_in()} (no WaveRNN weights; {missing_weights_message(self.vocoder_path)})",
        }

    def _stand_in(self) -> str:
        """What speaks when no WaveRNN is loaded, in words."""
        if self.starter_vocoder is None:
            return "Griffin-Lim"
        return f"the starter vocoder {self.starter_vocoder_path} (step {self.starter_vocoder.step})"

    @staticmethod
    def prepare_fast_vocoder() -> str | None:
        """Build (or find) the fast WaveRNN's C loop now rather than on the first clone.

        Returns None when it is ready, else why the TorchScript loop will be used instead.
        """
        from vocoder import native
        return None if native.library() is not None else native.reason()

    # Voices

    def embed(self, audio: str | Path | np.ndarray, sample_rate: int | None = None,
              return_wav: bool = False, clean: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Speaker embedding (256,) float32 of a reference recording (path, or array at `sample_rate`).

        Raises `AudioError` for missing, corrupt, silent or too short audio, and for audio that is
        not speech (`core.pitch.not_speech`: noise, whispering, a steady tone). `clean` reduces
        noise and band-limits the recording first (for microphone recordings). A recording with a
        second voice in it (`encoder.speaker_turns`) gives the embedding and pitch of the voice heard
        most, with a warning in the log and in the note of a plan made from the recording. With
        `return_wav`, also the prepared 16 kHz audio the encoder heard (that voice's alone, where two).
        """
        name = Path(audio).name if isinstance(audio, (str, Path)) else "The reference audio"
        wav = prepare_reference(audio, sample_rate, clean=clean)
        stats = pitch_stats(wav)  # also what a clone from this embedding speaks at (`_heard_pitch`)
        problem = not_speech(stats, name)
        if problem is not None:
            raise AudioError(problem)
        embedding, partials, slices = self.encoder.embed_utterance(wav, return_partials=True)
        main = main_speaker(partials, slices, len(wav))
        if main is not None:  # two voices: clone the one heard most, at its own pitch
            rate = encoder_hp.sampling_rate
            note = (f"{name} seems to hold two voices (or its sound changes part-way): only the one heard most "
                    f"is kept ({np.count_nonzero(main.keep) / rate:.0f} s of {len(wav) / rate:.0f} s of speech are "
                    f"that voice alone). A recording of one person gives the best likeness.")
            logger.warning(note)
            wav, embedding = wav[main.keep], main.embedding
            stats = pitch_stats(wav) or stats
            self._reference_notes.put(embedding, note)
        self._heard_pitch.store(embedding, stats.median_hz, stats.log_f0_spread)
        self._heard_level.put(embedding, power_dbfs(wav))
        return (embedding, wav) if return_wav else embedding

    def reference_note(self, embedding: np.ndarray) -> str | None:
        """What `embed` noticed in the recording behind `embedding` that the user should know (a second
        voice in it: see `embed`), or None."""
        return self._reference_notes.get(check_embedding(embedding))

    def reference_level(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> float:
        """Speech level (dBFS, mean power) of a recording as the encoder hears it (prepared as
        `embed` prepares it: raised to -30 dBFS if quieter, silences trimmed). `AudioError` as `embed`."""
        return power_dbfs(prepare_reference(audio, sample_rate))

    def remember_level(self, embedding: np.ndarray, level_dbfs: float) -> None:
        """Compare results of the voice of `embedding` at `level_dbfs` (its recording's speech level,
        measured elsewhere: a saved voice's, see `reference_level`), as `embed_output(like=...)` does."""
        self._heard_level.put(check_embedding(embedding), float(level_dbfs))

    def heard_level(self, embedding: np.ndarray) -> float | None:
        """The speech level (dBFS) known for the recording behind `embedding` (from `embed` or
        `remember_level`), None when none is."""
        return self._heard_level.get(embedding)

    def embed_output(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     like: np.ndarray | None = None) -> np.ndarray | None:
        """Embedding (256,) of generated speech, or None when it is silent.

        Unlike a reference, a result may be short: silences are trimmed only when at
        least half a second of speech remains, and the encoder pads anything under one
        partial (1.6 s). With `like` (the voice's embedding, one this pipeline made or was
        told the level of), the speech is brought to that recording's level first: the
        encoder hears level, and a result at a 0.97 peak would otherwise score up to 0.04
        lower against a recording made at -20 dBFS than the same voice at the same level.
        """
        wav = np.asarray(wav, dtype=np.float32)
        if wav.size == 0 or float(np.max(np.abs(wav))) < 1e-4:
            return None
        prepared = preprocess_wav(wav, sample_rate)
        if len(prepared) < MIN_OUTPUT_SPEECH_SECONDS * encoder_hp.sampling_rate:
            prepared = preprocess_wav(wav, sample_rate, trim_silence=False)
        level = None if like is None else self.heard_level(like)
        if level is not None:
            prepared = at_power_dbfs(prepared, level)
        return self.encoder.embed_utterance(prepared)

    @staticmethod
    def similarity(a, b) -> float:
        """Speaker similarity of two embeddings (cosine; same speaker usually above 0.8)."""
        return cosine_similarity(a, b)

    # Requests

    @staticmethod
    def prepare_script(text: str, known_voices: Sequence[str] | None = None,
                       max_chars: int = MAX_TEXT_CHARS) -> Script:
        """Check `text` (plain, or a script with [pause S] and [voice: Name] tags, see
        `deepfake_audio.script`) and split it into sentences; `TextError` when nothing can be
        said or a tag is wrong (with its line and column). The limit counts every character,
        markup too, and the pauses of one request add up to at most a minute (what a request
        costs grows with both). `known_voices`: the saved voices a script may name."""
        if text is None or not str(text).strip():
            raise TextError("The text is empty: type what the voice should say.")
        if len(text) > max_chars:
            raise TextError(f"The text is {len(text)} characters long; the limit is {max_chars}. "
                            "Split it into several requests.")
        parts = parse_script(text, known_voices or []) if has_markup(text) else [Part(text)]
        check_pauses(parts)
        sentences, ids, voices, asked, lead = [], [], [], [], 0.0
        for part in parts:
            if part.pause:  # [pause S] replaces the usual short pause (several in a row add up)
                if asked:
                    asked[-1] = (asked[-1] or 0.0) + part.pause
                else:
                    lead += part.pause
                continue
            for sentence in split_sentences(part.text):
                sequence = text_to_sequence(sentence.strip(), syn_hp.tts_cleaner_names)
                if has_speakable_characters(sequence):
                    sentences.append(sentence)
                    ids.append(tuple(sequence))
                    voices.append(part.voice)
                    asked.append(None)
        if not sentences:
            raise TextError("The text has no speakable characters: write English words "
                            "(letters; digits are read out as numbers).")
        last = len(sentences) - 1  # after the end: only a pause that was asked for
        gaps = tuple(g if g is not None else (SENTENCE_PAUSE_SECONDS if k < last else 0.0) for k, g in enumerate(asked))
        return Script(tuple(sentences), tuple(ids), tuple(voices), gaps, lead)

    def resolve_vocoder(self, vocoder: str | None, fallback: bool = False) -> tuple[str, str]:
        """(vocoder to run, note). "auto" (or None) is WaveRNN when loaded, else the starter
        vocoder when loaded, else Griffin-Lim.

        A vocoder without weights raises `MissingWeightsError`, or with `fallback` runs the
        best one loaded and says so in the note. An unknown name is a `RequestError`.
        """
        name = check_vocoder(vocoder)
        if name == "auto":
            return self.default_vocoder(), ""
        if name == "wavernn" and self.vocoder is None:
            if fallback:
                stand_in = self.default_vocoder()
                return stand_in, f"WaveRNN weights are missing, so the {VOCODER_LABELS[stand_in]} was used." \
                    if stand_in == "starter" else "WaveRNN weights are missing, so Griffin-Lim was used."
            raise MissingWeightsError(missing_weights_message(self.vocoder_path)
                                      + " (or choose the Griffin-Lim vocoder, which needs no weights)")
        if name == "starter" and self.starter_vocoder is None:
            if fallback:
                return "griffinlim", "The starter vocoder's weights are missing, so Griffin-Lim was used."
            raise MissingWeightsError(missing_weights_message(self.starter_vocoder_path)
                                      + " (or choose the Griffin-Lim vocoder, which needs no weights)")
        return name, ""

    def plan(self, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
             seed: int | None = None, vocoder: VocoderName | str | None = "auto", *,
             embedding: np.ndarray | None = None, sample_rate: int | None = None, mode: str = "fast",
             fallback_vocoder: bool = False, progress: ProgressFn = no_progress, pace: float = 1.0,
             voices: Mapping[str, Voice] | None = None, clean: bool = False, pitch: float = 0.0,
             voice_pitch_hz: float | None = None, tuned: TunedVoice | None = None) -> ClonePlan:
        """Check a clone request once and turn it into a `ClonePlan`.

        Cheap checks come first (text, pace, mode, weights, vocoder), then the voice: the
        given `embedding`, or the embedding of `reference_audio` (the one costly step,
        reported as the "encoding" stage). `voices` ({name: embedding}) are the saved voices
        a script's [voice: Name] lines may use; a script spoken only by those needs no
        reference. `pace` (0.5 to 2.0) is the speaking rate. `clean` reduces noise in the
        reference and band-limits it before it is encoded (for microphone recordings).
        `pitch` (-12 to 12 semitones) moves the voice's pitch (the starter vocoder, and a
        pitch-conditioned synthesizer, which then draws the mel at that pitch: with any vocoder).
        With either, a clone from a recording speaks around the recording's median F0
        (`core.pitch.pitch_stats` of the audio the encoder heard); one from an embedding (a
        saved voice) around `voice_pitch_hz` when the caller knows it (a saved voice's
        recording), else around its recording's when this pipeline made it (`embed`) or was told
        (`remember_pitch`), else around the F0 its embedding predicts (`encoder.voice_pitch`).
        `tuned` is a tuned voice (`core.tuned`, `load_tuned_voice`): its own weights speak it, at its
        recordings' pitch; `voices` may name tuned voices too. One made for other weights than the
        loaded synthesizer's is refused here (`WeightsError`).
        """
        use_user_threads()  # a server's worker thread may have been left with one (see core.threads)
        script = self.prepare_script(text, list(voices or ()))
        pace = check_pace(pace)
        pitch = check_pitch(pitch)
        check_mode(mode)
        self._require_synthesizer()
        vocoder, note = self.resolve_vocoder(vocoder, fallback_vocoder)
        used = set(script.voices) - {None}
        named_tuned = {name: voices[name] for name in used if isinstance(voices[name], TunedVoice)}
        named = {name: check_embedding(named_tuned[name].embedding if name in named_tuned else voices[name])
                 for name in used}
        for voice in [tuned, *named_tuned.values()]:
            if voice is not None:
                self.tuned_synthesizer(voice)  # refused here if it was tuned on other weights
                if vocoder == "starter" and voice.vocoder is not None \
                        and self.starter_vocoder_for(voice) is self.starter_vocoder:
                    note = " ".join(filter(None, [note, f"The tuned voice {voice.name!r} has its own vocoder, which "
                                                        "does not fit the loaded starter vocoder, so that one speaks it."]))
        if tuned is not None:
            embedding = tuned.embedding
            voice_pitch_hz = tuned.pitch_hz if voice_pitch_hz is None else voice_pitch_hz
        pitch_hz = voice_pitch_hz if embedding is not None else None
        spread = tuned.pitch_spread if tuned is not None and voice_pitch_hz == tuned.pitch_hz else None
        pitched = vocoder == "starter" or self._require_synthesizer().has_pitch
        if pitched and embedding is not None and pitch_hz is None:
            pitch_hz, spread = self._heard_pitch.recall(embedding)  # an embedding `embed` made: its recording's
        if embedding is not None:
            embedding = check_embedding(embedding)
        elif None in script.voices:  # some sentence is in the request's own voice
            if reference_audio is None or (isinstance(reference_audio, str) and not reference_audio.strip()):
                raise AudioError("No reference voice: upload or record a few seconds of speech, or choose a "
                                 "saved voice.")
            progress(ProgressEvent("encoding", 0, 1))
            embedding = self.embed(reference_audio, sample_rate, clean=clean)
            if pitched:  # `embed` measured the pitch of the audio the encoder heard
                pitch_hz, spread = self._heard_pitch.recall(embedding)
            note = " ".join(filter(None, [note, self.reference_note(embedding)]))  # a second voice in it
            progress(ProgressEvent("encoding", 1, 1))
        per_sentence = tuple(named[v] if v is not None else embedding for v in script.voices)
        tuned_per_sentence = tuple(named_tuned.get(v) if v is not None else tuned for v in script.voices)
        if embedding is None:
            embedding, tuned = per_sentence[0], tuned_per_sentence[0]
        # per-sentence voices whenever any sentence is not the plan's own voice (also when every
        # sentence is one other named voice: the plan's own then speaks none of them)
        many = any(e is not embedding for e in per_sentence) or any(t is not tuned for t in tuned_per_sentence)
        sentence_pitch: tuple[float | None, ...] = ()
        if pitch and not pitched:
            note = " ".join(filter(None, [note, "The pitch control needs the starter vocoder or the pitch-aware "
                                                "starter synthesizer: this clone keeps the voice's own pitch."]))
        if pitched:
            if pitch_hz is None and tuned is not None:
                pitch_hz = tuned.pitch_hz
            if pitch_hz is None:
                pitch_hz = self.predicted_pitch(embedding)
            if many:
                def named_pitch(name: str) -> float | None:
                    known = named_tuned[name].pitch_hz if name in named_tuned else None
                    return known if known is not None else self.predicted_pitch(named[name])
                sentence_pitch = tuple(pitch_hz if v is None else named_pitch(v) for v in script.voices)
        return ClonePlan(script.sentences, script.ids, vocoder, seed, mode, embedding, note, pace,
                         per_sentence if many else (), script.gaps, script.lead, pitch, pitch_hz, spread,
                         sentence_pitch, tuned, tuned_per_sentence if many else ())

    def remember_pitch(self, embedding: np.ndarray, median_hz: float, spread: float | None = None) -> None:
        """Speak the voice of `embedding` at `median_hz` (its recording's median F0, measured elsewhere:
        a saved voice's) and log-F0 `spread`, instead of the pitch its embedding suggests."""
        self._heard_pitch.store(check_embedding(embedding), median_hz, spread)

    def predicted_pitch(self, embedding: np.ndarray) -> float | None:
        """Median F0 (Hz) of a voice given by its embedding: measured, when this pipeline made the
        embedding from a recording (`embed`); else what the embedding predicts (`encoder.voice_pitch`),
        None without that model."""
        measured, _ = self._heard_pitch.recall(embedding)
        if measured is not None:
            return measured
        return None if self.voice_pitch is None else self.voice_pitch(embedding)

    # Stages

    def synthesize(self, texts: str | Sequence[str], embedding: np.ndarray, seed: int | None = None,
                   progress: ProgressFn = no_progress, mode: str = "parity", pace: float = 1.0) -> list[np.ndarray]:
        """Mels (80, frames) for each text, all spoken with `embedding`.

        Each text is used as one utterance (no splitting): this is the reference's
        behaviour. `clone` splits long text into sentences first. `mode` "fast" or "int8"
        runs the decoder's LSTMs with int8 weights, "fp16" with fp16 weights (see
        `synthesizer.fast`); "parity" is the reference.
        """
        synthesizer = self._require_synthesizer()
        texts = [texts] if isinstance(texts, str) else list(texts)
        embedding = check_embedding(embedding)
        return synthesizer.synthesize_spectrograms(texts, [embedding] * len(texts), seed=seed, mode=mode,
                                                   progress=_sentence_reporter(progress), pace=check_pace(pace))

    def synthesize_plan(self, plan: ClonePlan, sentences: Sequence[int] | None = None,
                        generator: torch.Generator | None = None,
                        progress: ProgressFn = no_progress) -> list[np.ndarray]:
        """Mels of the plan's sentences (all, or those indexed by `sentences`), from their ids."""
        picked = list(range(len(plan.sentences)) if sentences is None else sentences)
        synthesizer = self._require_synthesizer()
        requests = [plan.pitch_request(k) for k in picked]
        # Sentences at other pitches (a pitch-aware model), or spoken by other tuned voices: a pass each.
        keys = [(id(plan.tuned_of(k)), r if synthesizer.has_pitch else None) for k, r in zip(picked, requests)]
        if len(set(keys)) > 1:
            mels: dict[int, np.ndarray] = {}
            for key in dict.fromkeys(keys):
                group = [k for k, other in zip(picked, keys) if other == key]
                for k, mel in zip(group, self.synthesizer_for(plan, group[0]).synthesize_ids(
                        [list(plan.ids[k]) for k in group], [plan.voice_of(k) for k in group], seed=plan.seed,
                        generator=generator, mode=plan.mode, pace=plan.pace, pitch=plan.pitch_request(group[0]))):
                    mels[k] = mel
                progress(ProgressEvent("synthesizing", len(mels), len(picked), "sentence"))
            return [mels[k] for k in picked]
        synthesizer = self.synthesizer_for(plan, picked[0]) if picked else synthesizer
        return synthesizer.synthesize_ids(
            [list(plan.ids[k]) for k in picked], [plan.voice_of(k) for k in picked], seed=plan.seed,
            generator=generator, mode=plan.mode, progress=_sentence_reporter(progress), pace=plan.pace,
            pitch=requests[0] if requests else None)

    def vocode(self, mel: np.ndarray, vocoder: VocoderName = "wavernn", seed: int | None = None,
               progress: ProgressFn = no_progress, mode: str = "fast", pitch: float = 0.0,
               pitch_hz: float | None = None, tuned: TunedVoice | None = None) -> np.ndarray:
        """Waveform (float64, 200 * (frames - 1) samples at 16 kHz) of one mel, unnormalised.

        WaveRNN runs the reference's batched generation (folds of 8000 + 2 x 800 samples)
        when the mel spans more than one fold, else unbatched; `Vocoder.infer_waveform`
        gives direct control. `mode` is WaveRNN's: "fast" (default; int8), "int8", "fp16",
        or "parity" (the reference's numbers exactly, several times slower); see
        `deepfake_audio_core.modes`. The starter vocoder takes `pitch` (semitones) and
        `pitch_hz` (a median F0 to speak around), and speaks a `tuned` voice with the voice's own
        starter vocoder where it carries one.
        """
        vocoder, _ = self.resolve_vocoder(vocoder)
        if vocoder == "starter":
            wav = self.starter_vocoder_for(tuned).infer_waveform(mel, seed=seed, pitch_shift=pitch,
                                                                 pitch_target=pitch_hz)
            progress(ProgressEvent("vocoding", 1, 1))
            return wav
        if vocoder == "griffinlim":
            rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
            wav = griffin_lim(mel, rng=rng, **({} if mode == "parity" else FAST_GRIFFIN_LIM))
            progress(ProgressEvent("vocoding", 1, 1))
            return wav
        # Folding pays off only when there is more than one fold; a short mel is cheaper
        # in one unfolded pass than padded up to a full 9600-sample fold.
        batched = mel.shape[1] * HOP_SIZE > vocoder_hp.voc_target + 2 * vocoder_hp.voc_overlap
        return self.vocoder.infer_waveform(
            mel, batched=batched, seed=seed, mode=mode,
            progress=lambda done, total: progress(ProgressEvent("vocoding", done, total)))

    def vocode_sentence(self, plan: ClonePlan, k: int, mel: np.ndarray) -> np.ndarray:
        """Sentence k's audio by a vocoder that goes a sentence at a time (`PER_SENTENCE_VOCODERS`)."""
        return self.vocode(mel, plan.vocoder, plan.sentence_seed(k), mode=plan.mode, pitch=plan.pitch,
                           pitch_hz=plan.pitch_hz_of(k), tuned=plan.tuned_of(k))

    @staticmethod
    def rolling_parts() -> RollingParts:
        """Fresh `RollingParts` for one stream (`deepfake_audio.streaming`)."""
        return RollingParts(MelTimeline(), StreamStats(), PostnetLane(), 1.0 / vocoder_hp.max_abs_value)

    def stream_vocode(self, mel: np.ndarray, plan: ClonePlan, generator: torch.Generator, head: int,
                      first_samples: int, min_samples: int, ending: bool,
                      progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
        """WaveRNN audio of `mel` in pieces as they are final (see `Vocoder.stream_waveform`)."""
        return self.vocoder.stream_waveform(mel, head=head, generator=generator, mode=plan.mode,
                                            first_samples=first_samples, min_samples=min_samples, ending=ending,
                                            progress=progress)

    # Cloning

    def clone(self, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
              seed: int | None = None, vocoder: VocoderName = "auto", *,
              embedding: np.ndarray | None = None, sample_rate: int | None = None,
              progress: ProgressFn = no_progress, mode: str = "fast", pace: float = 1.0,
              voices: Mapping[str, Voice] | None = None, rolling: bool = False, pitch: float = 0.0,
              tuned: TunedVoice | None = None) -> CloneResult:
        """Speak `text` in the voice of `reference_audio` (or of a saved `embedding`).

        Long text is split into sentences, synthesized in batches and vocoded in one
        pass, with short pauses between sentences. Same seed, same inputs: same audio.
        `vocoder` "auto" is WaveRNN when its weights are loaded, else Griffin-Lim.
        `mode` "fast" (default; int8), "int8" or "fp16" set the synthesizer's and WaveRNN's
        precision (`deepfake_audio_core.modes`); "parity" gives the reference's numbers.
        `pace` is the speaking rate (0.5 to 2.0), `pitch` a shift in semitones (-12 to 12,
        starter vocoder). The text may be a script with [pause S] and [voice: Name] tags, the
        names looked up in `voices` ({name: embedding or tuned voice}); see `deepfake_audio.script`.
        `tuned` speaks with a tuned voice (`load_tuned_voice`) instead of a reference.
        `deepfake_audio.streaming` streams the result. `rolling` (WaveRNN, fast modes) runs
        the folds a stream runs, and so gives a stream's audio for the same seed, sample for
        sample; the default lockstep folds are faster for a whole text at once.
        """
        start = time.perf_counter()
        plan = self.plan(reference_audio, text, seed, vocoder, embedding=embedding, sample_rate=sample_rate,
                         mode=mode, progress=progress, pace=pace, voices=voices, pitch=pitch, tuned=tuned)
        return self.run(plan, progress, encoding_seconds=time.perf_counter() - start, rolling=rolling)

    def run(self, plan: ClonePlan, progress: ProgressFn = no_progress,
            encoding_seconds: float = 0.0, rolling: bool = False) -> CloneResult:
        """Carry out a plan: synthesize every sentence, vocode, join with pauses, normalise the peak.
        `rolling`: see `clone`."""
        seconds: dict[str, float] = {"encoding": encoding_seconds}
        start = time.perf_counter()
        progress(ProgressEvent("synthesizing", 0, len(plan.sentences), "sentence"))
        generator = make_generator(plan.seed)
        mels = []
        for group in plan.groups():
            mels += self.synthesize_plan(plan, group, generator=generator)
            progress(ProgressEvent("synthesizing", group[-1] + 1, len(plan.sentences), "sentence"))
        seconds["synthesizing"] = time.perf_counter() - start

        start = time.perf_counter()
        timeline = Timeline(plan, SAMPLE_RATE)
        wav = timeline.join(self._vocode_sentences(mels, plan, progress, rolling))
        seconds["vocoding"] = time.perf_counter() - start
        if self.watermark:
            start = time.perf_counter()
            wav = timeline.normalize(embed_watermark(wav, SAMPLE_RATE))  # a uniform scale keeps the mark
            seconds["watermarking"] = time.perf_counter() - start
        return CloneResult(wav, SAMPLE_RATE, plan.embedding, mels, list(plan.sentences), plan.vocoder, seconds,
                           plan.note)

    def _vocode_sentences(self, mels: list[np.ndarray], plan: ClonePlan, progress: ProgressFn,
                          rolling: bool = False) -> list[np.ndarray]:
        """Each sentence's audio, (samples,) unnormalised, from its (80, frames) mel."""
        if plan.vocoder == "wavernn":
            progress(ProgressEvent("vocoding", 0, 1))
            # One pass over the joined mels keeps the vocoder's folds full; then cut at the joins.
            joined = np.concatenate(mels, axis=1)
            if rolling and plan.rolling:  # the folds a stream of this plan runs: the same audio
                wav = next(iter(self.vocoder.rolling_waveform(joined, seed=plan.seed, mode=plan.mode)),
                           np.zeros(0))
                progress(ProgressEvent("vocoding", 1, 1))
            else:
                wav = self.vocode(joined, "wavernn", plan.seed, progress, plan.mode)
            cuts = np.cumsum([m.shape[1] for m in mels])[:-1] * HOP_SIZE
            pieces = np.split(wav, np.minimum(cuts, len(wav)))
        else:
            progress(ProgressEvent("vocoding", 0, len(mels), "sentence"))
            pieces = []
            for k, mel in enumerate(mels):
                pieces.append(self.vocode_sentence(plan, k, mel))
                progress(ProgressEvent("vocoding", k + 1, len(mels), "sentence"))
        return pieces

    def synthesizer_for(self, plan: ClonePlan, k: int) -> Synthesizer:
        """The synthesizer that speaks sentence k of `plan`: the loaded one, or a tuned voice's copy of it."""
        voice = plan.tuned_of(k)
        return self._require_synthesizer() if voice is None else self.tuned_synthesizer(voice)

    def tuned_synthesizer(self, voice: TunedVoice) -> Synthesizer:
        """The loaded synthesizer with `voice`'s tuned weights in place, made once and kept for the
        `TUNED_SYNTHESIZERS_KEPT` voices used last. `WeightsError` where the voice was tuned on other
        weights than the loaded synthesizer's."""
        base = self._require_synthesizer()
        with self._tuned_lock:
            if id(voice) in self._tuned:
                self._tuned.move_to_end(id(voice))
                return self._tuned[id(voice)][1]
        synthesizer = base.tuned(voice)  # outside the lock: a copy takes a moment; two threads may both make one
        with self._tuned_lock:
            self._tuned[id(voice)] = (voice, synthesizer)  # the voice is kept too, so that its id stays its own
            while len(self._tuned) > TUNED_SYNTHESIZERS_KEPT:
                self._tuned.popitem(last=False)
        return synthesizer

    def starter_vocoder_for(self, voice: TunedVoice | None) -> StarterVocoder:
        """The starter vocoder that speaks `voice`: the loaded one with the voice's own share in place
        where its tuning made one (made once and kept for the `TUNED_SYNTHESIZERS_KEPT` voices used
        last), else the loaded one; also the loaded one where the share does not fit it (tuned on
        another starter vocoder), with a warning in the log (`plan` says so in its note)."""
        if voice is None or voice.vocoder is None or self.starter_vocoder is None:
            return self.starter_vocoder
        with self._tuned_lock:
            if id(voice) in self._tuned_vocoders:
                self._tuned_vocoders.move_to_end(id(voice))
                return self._tuned_vocoders[id(voice)][1]
        label = f"The vocoder of the tuned voice {voice.name!r}" + (f" ({voice.path})" if voice.path else "")
        try:
            vocoder = self.starter_vocoder.tuned(voice.vocoder["weights"], voice.vocoder["base"], label)
        except WeightsError as exc:
            logger.warning("%s; the loaded starter vocoder speaks the voice instead", exc)
            vocoder = self.starter_vocoder
        with self._tuned_lock:
            self._tuned_vocoders[id(voice)] = (voice, vocoder)
            while len(self._tuned_vocoders) > TUNED_SYNTHESIZERS_KEPT:
                self._tuned_vocoders.popitem(last=False)
        return vocoder

    def _require_synthesizer(self) -> Synthesizer:
        if self.synthesizer is None:
            raise MissingWeightsError(missing_weights_message(self.synthesizer_path))
        return self.synthesizer


def _sentence_reporter(progress: ProgressFn) -> Callable[[int, int], None]:
    return lambda done, total: progress(ProgressEvent("synthesizing", done, total, "sentence"))
