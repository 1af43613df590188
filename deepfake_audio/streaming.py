"""Streaming clone: the cloned speech in pieces, each yielded as soon as it is final.

    from deepfake_audio import Pipeline
    from deepfake_audio.streaming import stream_clone
    pipe = Pipeline()
    for chunk in stream_clone(pipe, "me.wav", "First sentence. Second one.", seed=1):
        play(chunk.audio, chunk.sample_rate)        # float32 in [-0.97, 0.97]

The first sentence goes first: it is synthesized on its own and its first folds are
short (the vocoder's "head"), so its opening is heard after about a second; the other
sentences are then synthesized together and vocoded in one pass, as `Pipeline.clone`
does. The pieces together have the same length and pauses as `clone`'s output.

Levels: `clone` scales its whole output to a 0.97 peak, which a stream cannot know in
advance. Here each piece is scaled by min(1, 0.97 / loudest sample so far): quiet
speech is left as the vocoder made it and nothing clips.

Watermark: each piece is marked as it goes out (`watermark.StreamWatermarker`, with the
audio before it as context), so the pieces carry the watermark as `clone`'s output does;
they are not bit-identical to a clip marked whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepfake_audio.core.rng import make_generator
from deepfake_audio.watermark import StreamWatermarker
from deepfake_audio.pipeline import (HOP_SIZE, OUTPUT_PEAK, SAMPLE_RATE, ClonePlan, Pipeline, ProgressEvent,
                                     ProgressFn, no_progress)

# Samples at the start of the first sentence generated before the rest, in short folds.
HEAD_SAMPLES = 4000
# The first piece is yielded once this many samples are final; later ones are at least `CHUNK_SAMPLES`.
FIRST_CHUNK_SAMPLES = 400
CHUNK_SAMPLES = 3200


@dataclass
class AudioChunk:
    """One piece of a streamed clone."""

    audio: np.ndarray  # float32 (samples,) at `sample_rate`, within [-0.97, 0.97]
    sample_rate: int
    start: int  # samples of the whole output that came before this piece
    sentence: int  # index into the sentences of the text (a pause belongs to the sentence before it)


class CloneStream:
    """Iterator of `AudioChunk`s that also keeps what the clone is made of.

    `plan` (sentences, embedding, vocoder, ...) is set from the start; `mels` (one
    (80, frames) per sentence, in order) fills in as sentences are synthesized and is
    complete once the stream is exhausted.
    """

    def __init__(self, plan: ClonePlan):
        self.plan = plan
        self.mels: list[np.ndarray] = []
        self._chunks: Iterator[AudioChunk] = iter(())

    @property
    def sentences(self) -> list[str]:
        return list(self.plan.sentences)

    @property
    def embedding(self) -> np.ndarray:
        return self.plan.embedding

    @property
    def vocoder(self) -> str:
        return self.plan.vocoder

    def __iter__(self) -> "CloneStream":
        return self

    def __next__(self) -> AudioChunk:
        return next(self._chunks)


def stream_clone(pipe: Pipeline, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
                 seed: int | None = None, vocoder: str = "auto", *, embedding: np.ndarray | None = None,
                 sample_rate: int | None = None, mode: str = "fast", head: int = HEAD_SAMPLES,
                 progress: ProgressFn = no_progress, plan: ClonePlan | None = None, pace: float = 1.0,
                 voices=None) -> CloneStream:
    """`Pipeline.clone` as a stream of `AudioChunk`s (same arguments; `mode` is the WaveRNN mode).

    Input errors (text, audio, weights) are raised before the first piece. Same seed,
    same inputs: same pieces. With Griffin-Lim each sentence is one piece. A `plan`
    made by `Pipeline.plan` replaces the request arguments.
    """
    if plan is None:
        plan = pipe.plan(reference_audio, text, seed, vocoder, embedding=embedding, sample_rate=sample_rate,
                         mode=mode, progress=progress, pace=pace, voices=voices)
    stream = CloneStream(plan)
    stream._chunks = _stream(pipe, stream, head, progress)
    return stream


def _stream(pipe: Pipeline, stream: CloneStream, head: int, progress: ProgressFn) -> Iterator[AudioChunk]:
    plan = stream.plan
    n = len(plan.sentences)
    synth_rng = make_generator(plan.seed)
    vocoder_rng = make_generator(plan.seed, pipe.device)
    out = _Output(plan, StreamWatermarker(SAMPLE_RATE) if pipe.watermark else None)
    yield from out.lead()
    # The first sentence alone, with a head; then all the others in one batch and one vocoder pass.
    # Parity mode reproduces `clone`: everything in one batch and one pass.
    first_alone = n > 1 and not (plan.vocoder == "wavernn" and plan.mode == "parity")
    groups = [[0], list(range(1, n))] if first_alone else [list(range(n))]
    progress(ProgressEvent("synthesizing", 0, n, "sentence"))
    for g, group in enumerate(groups):
        mels = pipe.synthesize_plan(plan, group, generator=synth_rng)
        stream.mels.extend(mels)
        progress(ProgressEvent("synthesizing", group[-1] + 1, n, "sentence"))
        if plan.vocoder == "griffinlim":
            for k, mel in zip(group, mels):
                wav = pipe.vocode(mel, "griffinlim", plan.sentence_seed(k), mode=plan.mode)
                yield from out.sentence(wav, k)
                progress(ProgressEvent("vocoding", k + 1, n, "sentence"))
            continue
        # One pass over the group's joined mels, cut at the joins as `clone` does.
        joins = list(np.cumsum([m.shape[1] for m in mels])[:-1] * HOP_SIZE)
        pieces = pipe.stream_vocode(
            np.concatenate(mels, axis=1), plan, vocoder_rng, head=head if g == 0 else 0,
            first_samples=FIRST_CHUNK_SAMPLES if g == 0 else CHUNK_SAMPLES, min_samples=CHUNK_SAMPLES,
            ending=g == len(groups) - 1,  # a group that others follow keeps its last frame, unfaded
            progress=lambda done, total: progress(ProgressEvent("vocoding", done, total)))
        position, k = 0, 0
        for piece in pieces:
            while len(piece):
                take = len(piece) if k == len(joins) else min(len(piece), joins[k] - position)
                yield from out.add(piece[:take], group[k])
                position, piece = position + take, piece[take:]
                if k < len(joins) and position == joins[k]:
                    yield from out.end_of(group[k])
                    k += 1
        yield from out.end_of(group[-1])


class _Output:
    """Scales the pieces (see the module's notes on levels), watermarks them, numbers them and adds
    the pauses."""

    def __init__(self, plan: ClonePlan, marker: StreamWatermarker | None):
        self.plan = plan
        self.marker = marker
        self.peak = OUTPUT_PEAK
        self.start = 0

    def add(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        if len(wav):
            self.peak = max(self.peak, float(np.max(np.abs(wav))))
            yield self._chunk(wav * (OUTPUT_PEAK / self.peak), sentence)

    def lead(self) -> Iterator[AudioChunk]:
        """The silence a script asked for before its first sentence."""
        if self.plan.lead:
            yield self._chunk(np.zeros(int(round(self.plan.lead * SAMPLE_RATE))), 0)

    def end_of(self, sentence: int) -> Iterator[AudioChunk]:
        gap = int(round(self.plan.gap_after(sentence) * SAMPLE_RATE))
        if gap:
            yield self._chunk(np.zeros(gap), sentence)

    def sentence(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        yield from self.add(wav, sentence)
        yield from self.end_of(sentence)

    def _chunk(self, wav: np.ndarray, sentence: int) -> AudioChunk:
        wav = np.asarray(wav, dtype=np.float32)
        if self.marker is not None:
            # The mark moves a few samples by up to a few hundredths: keep the promised peak.
            wav = np.clip(self.marker.mark(wav), -OUTPUT_PEAK, OUTPUT_PEAK)
        chunk = AudioChunk(wav, SAMPLE_RATE, self.start, sentence)
        self.start += len(wav)
        return chunk
