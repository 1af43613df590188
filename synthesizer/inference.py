"""Text + speaker embedding -> mel spectrograms with a loaded synthesizer.

Two architectures load through the same class and interface: the published Tacotron
(the default; a checkpoint without an "architecture" entry is one) and the small
FastSpeech-style starter model (`synthesizer.fastspeech`, "architecture": "fastspeech").
For the Tacotron, `Synthesizer.synthesize_spectrograms` reproduces the reference wrapper
exactly (batches of 16, zero-padded ids, common stop, trailing trim); it is the parity
path. Sentence splitting for long text lives in `synthesizer.sentences` and is applied by
the pipeline on top of it.
"""
from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator, Sequence

import numpy as np
import torch

from deepfake_audio_core.requests import MAX_PACE, MIN_PACE
from deepfake_audio_core.checkpoint import MissingMessage, check_state_dict, model_state_of, read_checkpoint
from deepfake_audio_core.errors import TextError, WeightsError
from deepfake_audio_core.hparams import with_overrides
from deepfake_audio_core.modes import arithmetic
from deepfake_audio_core.rng import make_generator
from synthesizer import fast
from synthesizer.audio import stretch_frames
from synthesizer.fastspeech import PITCH_REFERENCE_HZ, FastSpeech, FastSpeechHParams
from synthesizer.hparams import SynthesizerHParams, hparams as default_hparams
from synthesizer.model import LSTMCells, Tacotron
from synthesizer.postnet_blocks import PostnetBlocks, PostnetLane
from synthesizer.text import has_speakable_characters, text_to_sequence
from synthesizer.tuning import fingerprint, is_tunable

TACOTRON = "tacotron"
FASTSPEECH = FastSpeech.architecture
ARCHITECTURES = (TACOTRON, FASTSPEECH)



@dataclass(frozen=True)
class PitchRequest:
    """The pitch a pitch-conditioned synthesizer speaks at: its voice's median F0 (Hz) and
    spread of log-F0 (`core.pitch.pitch_stats`; None: what the speaker embedding suggests),
    moved by `shift` semitones."""

    median_hz: float | None = None
    spread: float | None = None
    shift: float = 0.0

    def stats(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """(n, 2) log-F0 (median, spread) as the model takes them (NaN: guess it), or None."""
        if self.median_hz is None and self.spread is None:
            return None
        median = math.log(self.median_hz / PITCH_REFERENCE_HZ) if self.median_hz else math.nan
        spread = math.nan if self.spread is None else self.spread
        return torch.tensor([[median, spread]], dtype=torch.float32, device=device).expand(n, 2)


class Synthesizer:
    """A loaded synthesizer (Tacotron or FastSpeech). Outputs mels (80, frames) in [-4, 4], 12.5 ms frames."""

    sample_rate = default_hparams.sample_rate

    def __init__(self, weights: Path | str, device: str | torch.device = "cpu",
                 hp: SynthesizerHParams = default_hparams, missing_message: MissingMessage | None = None):
        self.weights = Path(weights)
        self.device = torch.device(device)
        ckpt = read_checkpoint(self.weights, missing_message)
        self.architecture = ckpt.get("architecture", TACOTRON)
        if self.architecture not in ARCHITECTURES:
            raise WeightsError(f"{self.weights} holds a synthesizer of unknown architecture "
                               f"{self.architecture!r}; this version reads {' and '.join(ARCHITECTURES)}.")
        # A trained checkpoint of a non-published size says how it differs under "hparams".
        if self.architecture == FASTSPEECH:
            self.hparams = hp
            self.model = FastSpeech(with_overrides(FastSpeechHParams(), ckpt.get("hparams")))
        else:
            self.hparams = with_overrides(hp, ckpt.get("hparams"))
            self.model = Tacotron(self.hparams)
        state = model_state_of(ckpt, self.weights)
        check_state_dict(self.model, state, self.weights,
                         "synthesizer" if self.architecture == TACOTRON else "FastSpeech synthesizer")
        self.model.load_state_dict(state, strict=True)  # fp16 weights are converted to the model's fp32
        self.model.to(self.device).eval()
        self._fast: dict[str, fast.LSTMCells] = {}
        self._fast_lock = threading.Lock()
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the weights a voice's fine-tuning leaves frozen (`synthesizer.tuning`), made once."""
        with self._fast_lock:
            if self._fingerprint is None:
                self._fingerprint = fingerprint(self.model, self.architecture)
            return self._fingerprint

    def tuned(self, voice) -> "Synthesizer":
        """A copy of this synthesizer with a tuned voice's weights (`core.tuned.TunedVoice`) in place.

        Raises `WeightsError` when the voice was tuned on another synthesizer: its weights only
        make sense beside the frozen ones they were trained with."""
        if voice.architecture != self.architecture or voice.base != self.fingerprint:
            where = f" ({voice.path})" if voice.path else ""
            raise WeightsError(
                f"The tuned voice {voice.name!r}{where} was made for another synthesizer ({voice.architecture} "
                f"{voice.base[:8]}) than the one loaded ({self.architecture} {self.fingerprint[:8]}, {self.weights}): "
                "use the models it was tuned with, or tune the voice again on these.")
        state = self.model.state_dict()
        wrong = [k for k, v in voice.weights.items()
                 if not is_tunable(k, self.architecture) or k not in state or state[k].shape != v.shape]
        if wrong:
            raise WeightsError(f"The tuned voice {voice.name!r} does not fit the loaded synthesizer "
                               f"(parameter {wrong[0]}): tune the voice again.")
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin.model.load_state_dict({k: v.to(state[k].dtype) for k, v in voice.weights.items()}, strict=False)
        twin.model.eval()
        twin._fast, twin._fast_lock = {}, threading.Lock()  # reduced-precision cells of the new weights
        return twin

    @property
    def step(self) -> int:
        return int(self.model.step.item())

    @property
    def r(self) -> int:
        """Frames per decoder step of a Tacotron (a FastSpeech model makes all frames at once: 1)."""
        return self.model.r if self.architecture == TACOTRON else 1

    def text_ids(self, text: str) -> list[int]:
        """Ids of one text as the reference computes them (stripped, cleaned, EOS appended)."""
        return text_to_sequence(text.strip(), self.hparams.tts_cleaner_names)

    def synthesize_spectrograms(self, texts: Sequence[str], embeddings: np.ndarray | Sequence[np.ndarray],
                                seed: int | None = None, generator: torch.Generator | None = None,
                                return_alignments: bool = False, progress=None, mode: str = "parity",
                                pace: float = 1.0, pitch: PitchRequest | None = None):
        """Mels of `texts`, one (80, frames) float32 array each, in order.

        `embeddings` gives one (256,) speaker embedding per text (a single 1-D array is
        used for one text). Texts go through the model in chunks of 16; within a chunk
        every item runs until all have stopped, then each loses its trailing frames whose
        maximum is below -3.4. Seeding (`seed`, or an explicit `generator`) reproduces
        the reference run made right after `torch.manual_seed(seed)`.
        `progress(done, total)` is called after each chunk. `mode` (`deepfake_audio_core.modes`)
        "fast" (int8) or "int8" runs the decoder's LSTM cells with int8 weights and "fp16"
        with fp16 weights (`synthesizer.fast`: faster on CPU, not the reference's exact
        numbers); "parity" (the default) is the reference path. A FastSpeech model has no
        randomness and one path: seed and mode do not change its output; `return_alignments`
        gives its durations (frames per character) instead of attention. `pace` (0.5 to 2.0) is the speaking rate: a
        FastSpeech model scales its durations, a Tacotron's mels are stretched in time
        (`synthesizer.audio.stretch_frames`); 1.0 changes nothing. `pitch` (a
        `PitchRequest`) is the voice's measured pitch and a shift for a pitch-conditioned
        model (`has_pitch`); other models ignore it (the starter vocoder moves their pitch).
        """
        if isinstance(texts, str):
            texts = [texts]
        inputs = [self.text_ids(t) for t in texts]
        for text, ids in zip(texts, inputs):
            if not has_speakable_characters(ids):
                raise TextError(f"Nothing to say in {text!r}: the text has no letters the synthesizer can speak.")
        return self.synthesize_ids(inputs, embeddings, seed, generator, return_alignments, progress, mode, pace,
                                   pitch)

    def synthesize_ids(self, inputs: Sequence[Sequence[int]], embeddings: np.ndarray | Sequence[np.ndarray],
                       seed: int | None = None, generator: torch.Generator | None = None,
                       return_alignments: bool = False, progress=None, mode: str = "parity", pace: float = 1.0,
                       pitch: PitchRequest | None = None):
        """`synthesize_spectrograms` for texts already turned into character ids (`text_ids`)."""
        arithmetic(mode)  # refuses an unknown mode
        if not MIN_PACE <= pace <= MAX_PACE:
            raise ValueError(f"pace must be from {MIN_PACE} to {MAX_PACE}, got {pace}")
        inputs = [list(ids) for ids in inputs]
        embeds = [embeddings] if isinstance(embeddings, np.ndarray) and embeddings.ndim == 1 else list(embeddings)
        if len(embeds) != len(inputs):
            raise ValueError(f"{len(inputs)} texts but {len(embeds)} speaker embeddings")
        if self.architecture == FASTSPEECH:
            return self._synthesize_parallel(inputs, embeds, return_alignments, progress, pace, pitch)
        if generator is None:
            generator = make_generator(seed)
        specs, alignments = [], None
        for done, chars, speakers in self._batches(inputs, embeds):
            cells = self._lstm_cells(mode)
            with fast.decoding(cells):
                if mode == "parity":
                    _, mels, alignments = self.model.generate(chars, speakers, self.hparams.max_decoder_frames,
                                                              generator, cells)
                else:
                    mels, alignments = self._generate_windowed(chars, speakers, generator, cells)
            for mel in mels.cpu().numpy():
                specs.append(stretch_frames(self.trim_trailing_silence(mel), pace))
            if progress is not None:
                progress(done, len(inputs))
        if return_alignments:
            return specs, alignments.cpu().numpy()
        return specs

    def _postnet_blocks(self, cells: LSTMCells | None, lane: PostnetLane | None, early: bool = True
                        ) -> PostnetBlocks:
        """The windowed post-net of a fast-mode decoding, its later blocks in `lane` where the
        decoder keeps to one thread (`fast.postnet_beside`)."""
        return PostnetBlocks(self.model, self.hparams.max_decoder_frames + self.r,
                             lane if fast.postnet_beside(cells) else None, early)

    def _generate_windowed(self, chars: torch.Tensor, speakers: torch.Tensor, generator: torch.Generator,
                           cells: LSTMCells | None) -> tuple[torch.Tensor, torch.Tensor]:
        """`Tacotron.generate` with the windowed post-net (the fast modes), its blocks made as the
        decoder goes (`_postnet_blocks`): post-net mels (B, 80, T) and attention (B, T / r, N)."""
        blocks = self._postnet_blocks(cells, PostnetLane())
        scores, made = [], []
        for step, attention, _ in self.model.decode_steps(chars, speakers, self.hparams.max_decoder_frames,
                                                           generator, cells):
            scores.append(attention.unsqueeze(1))
            made += blocks.add(step)
        made += blocks.finish()
        return torch.cat(made, dim=2), torch.cat(scores, dim=1)

    def synthesize_steps(self, inputs: Sequence[Sequence[int]], embeddings: Sequence[np.ndarray],
                         generator: torch.Generator, mode: str = "fast", pace: float = 1.0,
                         emit: Callable[[np.ndarray, bool], None] | None = None, lane: PostnetLane | None = None,
                         pitch: PitchRequest | None = None) -> Generator[None, None, list[np.ndarray]]:
        """`synthesize_ids` (same mels) as a generator that pauses after every decoder step and
        returns the mels: for a caller that interleaves the synthesis with other work
        (`mels = yield from synthesizer.synthesize_steps(...)`).

        `emit(frames, done)`, if given, gets the mels' frames in order as soon as they are
        final: a batch's first mel as its decoder makes them (fast modes at pace 1; its post-net
        blocks as in `stream_ids`, quiet frames held back until a louder one follows), the
        others when the batch ends (every item runs until all have stopped, and the trim of
        each one's quiet tail needs its last frame); `done` is true with a mel's last frames
        (which may be none). Joined, a mel's frames are the mel returned for it. With a `lane`
        (see `synthesizer.postnet_blocks`) the later post-net blocks of the int8 mode run on the
        worker pool beside the decoder steps: same mels.
        """
        if self.architecture != TACOTRON:
            specs = self.synthesize_ids(inputs, embeddings, generator=generator, mode=mode, pace=pace, pitch=pitch)
            for spec in specs if emit is not None else ():
                emit(spec, True)
            return specs
        windowed = mode != "parity"
        early = emit is not None and windowed and pace == 1.0  # a batch's first mel as it is made
        specs = []
        for _, chars, speakers in self._batches([list(ids) for ids in inputs], list(embeddings)):
            cells = self._lstm_cells(mode)
            blocks = self._postnet_blocks(cells, lane, early)
            made: list[torch.Tensor] = []  # post-net blocks handed back
            first = _QuietTail(self.hparams.tts_stop_threshold)

            def keep(done: list[torch.Tensor]) -> None:
                made.extend(done)
                for block in done if early else ():
                    piece = first.add(block[0].cpu().numpy())
                    if piece is not None:
                        emit(piece, False)

            with fast.decoding(cells):
                for step, _, _ in self.model.decode_steps(chars, speakers, self.hparams.max_decoder_frames,
                                                          generator, cells):
                    keep(blocks.add(step))
                    yield
                if windowed:  # the same blocks as `postnet_output(windowed=True)`: those made, then the rest
                    keep(blocks.finish())
                    post = torch.cat(made, dim=2)
                else:
                    post = self.model.postnet_output(blocks.mels())
            batch = [stretch_frames(self.trim_trailing_silence(mel), pace) for mel in post.cpu().numpy()]
            for k, spec in enumerate(batch if emit is not None else ()):
                emit(spec[:, first.emitted:] if k == 0 and early else spec, True)
            specs += batch
        return specs

    def stream_ids(self, ids: Sequence[int], embedding: np.ndarray, generator: torch.Generator | None = None,
                   mode: str = "fast", pace: float = 1.0, each_step: bool = False, lane: PostnetLane | None = None,
                   pitch: PitchRequest | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """One text's mel in pieces as the decoder makes them: (frames (80, n) float32, decoder steps so far).

        Joined, the pieces equal `synthesize_ids([ids], [embedding], generator=..., mode=mode)[0]`
        for a generator in the same state: the Tacotron's post-net runs in the same blocks
        (`Tacotron.postnet_block`) and trailing quiet frames are held back until a louder one
        follows, then dropped at the end as the trim does. A piece comes once its post-net
        block's context exists, a few decoder steps after its frames; with `each_step`, every
        decoder step yields, with an empty piece (80, 0) when it completed none. "parity" mode, a
        speaking rate other than 1 (the stretch needs the whole mel) and the FastSpeech model
        (one parallel pass) give the whole mel as one piece. With a `lane` (see
        `synthesizer.postnet_blocks`) the later post-net blocks of the int8 mode run on the
        worker pool beside the decoder steps, and their pieces come once they are done.
        """
        arithmetic(mode)  # refuses an unknown mode
        if self.architecture != TACOTRON or mode == "parity" or pace != 1.0:
            mel = self.synthesize_ids([ids], [embedding], generator=generator, mode=mode, pace=pace, pitch=pitch)[0]
            yield mel, 0
            return
        _, chars, speakers = next(self._batches([list(ids)], [embedding]))
        cells = self._lstm_cells(mode)
        threshold = self.hparams.tts_stop_threshold
        n_steps = 0  # decoder steps
        blocks = self._postnet_blocks(cells, lane)
        tail = _QuietTail(threshold)
        release = tail.add
        empty = np.zeros((self.hparams.num_mels, 0), np.float32)
        with fast.decoding(cells):
            steps = self.model.decode_steps(chars, speakers, self.hparams.max_decoder_frames, generator, cells)
            for frames, _, _ in steps:
                n_steps += 1
                made = False
                for block in blocks.add(frames):
                    piece = release(block[0].cpu().numpy())
                    if piece is not None:
                        made = True
                        yield piece, n_steps
                if each_step and not made:
                    yield empty, n_steps
            for block in blocks.finish():
                piece = release(block[0].cpu().numpy())
                if piece is not None:
                    yield piece, n_steps
        if tail.emitted == 0:  # all quiet: the trim keeps one frame
            yield np.concatenate(tail.held, axis=1)[:, :1], n_steps

    def _synthesize_parallel(self, inputs: list[list[int]], embeds: list[np.ndarray], return_alignments: bool,
                             progress, pace: float = 1.0, pitch: PitchRequest | None = None
                             ) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
        """FastSpeech: each chunk of 16 in one pass; each mel cut to its own predicted length."""
        specs, durations = [], []
        for done, chars, speakers in self._batches(inputs, embeds):
            stats, shift = (None, 0.0) if pitch is None else (pitch.stats(len(chars), self.device), pitch.shift)
            mels, frames = self.model.generate(chars, speakers, pace, stats, shift)
            lengths = (chars != 0).sum(1).tolist()
            for mel, d, n in zip(mels.cpu().numpy(), frames.cpu().numpy(), lengths):
                specs.append(np.ascontiguousarray(mel[:, :int(d.sum())]))
                durations.append(d[:n])
            if progress is not None:
                progress(done, len(inputs))
        return (specs, durations) if return_alignments else specs

    @property
    def has_pitch(self) -> bool:
        """Whether the model draws its mels at a requested pitch (a pitch-conditioned FastSpeech)."""
        return self.architecture == FASTSPEECH and self.model.hp.pitch_conditioning

    def _batches(self, inputs: list[list[int]], embeds: list[np.ndarray]):
        """(items done after this batch, chars (B, N) zero-padded, speakers (B, 256)) per chunk of 16."""
        batch_size = self.hparams.synthesis_batch_size
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            max_len = max(len(ids) for ids in batch)
            chars = torch.tensor([ids + [0] * (max_len - len(ids)) for ids in batch], dtype=torch.long,
                                 device=self.device)
            speakers = torch.from_numpy(np.stack(embeds[start:start + batch_size]).astype(np.float32)).to(self.device)
            yield start + len(batch), chars, speakers

    def _lstm_cells(self, mode: str) -> "fast.LSTMCells | None":
        """The reduced-precision LSTM cells of `mode`, made once; None for parity or where fbgemm is missing."""
        kind = arithmetic(mode)
        if kind not in fast.CELLS or not fast.available(self.device):
            return None
        with self._fast_lock:
            if kind not in self._fast:
                self._fast[kind] = fast.lstm_cells(self.model.decoder, kind)
            return self._fast[kind]

    def trim_trailing_silence(self, mel: np.ndarray) -> np.ndarray:
        """Drop trailing frames whose loudest channel is below the stop threshold (keeps >= 1 frame)."""
        frame_max = mel.max(axis=0)
        keep = len(frame_max)
        while keep > 1 and frame_max[keep - 1] < self.hparams.tts_stop_threshold:
            keep -= 1
        return mel[:, :keep]


class _QuietTail:
    """A mel's frames released in order as they come, quiet ones (loudest channel below the
    stop threshold) held back until a louder frame follows: what `trim_trailing_silence`
    would cut from the end is never released."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.held: list[np.ndarray] = []
        self.emitted = 0  # frames released so far

    def add(self, block: np.ndarray) -> np.ndarray | None:
        """The frames of `block` (80, n) and of those held before it up to its last loud one, if any."""
        loud = np.flatnonzero(block.max(axis=0) >= self.threshold)
        if not len(loud):
            self.held.append(block)
            return None
        cut = loud[-1] + 1
        out = np.concatenate(self.held + [block[:, :cut]], axis=1)
        self.held = [block[:, cut:]] if cut < block.shape[1] else []
        self.emitted += out.shape[1]
        return out
