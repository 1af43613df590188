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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepfake_audio.pipeline import (OUTPUT_PEAK, SAMPLE_RATE, SENTENCE_PAUSE_SECONDS, VOCODERS, Pipeline,
                                     ProgressFn, _no_progress)
from synthesizer.inference import make_generator

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

    `sentences`, `embedding` and `vocoder` are set from the start; `mels` (one (80, frames)
    per sentence, in order) fills in as sentences are synthesized and is complete once
    the stream is exhausted.
    """

    def __init__(self, sentences: list[str], embedding: np.ndarray, vocoder: str):
        self.sentences = sentences
        self.embedding = embedding
        self.vocoder = vocoder
        self.mels: list[np.ndarray] = []
        self._chunks: Iterator[AudioChunk] = iter(())

    def __iter__(self) -> "CloneStream":
        return self

    def __next__(self) -> AudioChunk:
        return next(self._chunks)


def stream_clone(pipe: Pipeline, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
                 seed: int | None = None, vocoder: str = "auto", *, embedding: np.ndarray | None = None,
                 sample_rate: int | None = None, mode: str = "fast", head: int = HEAD_SAMPLES,
                 progress: ProgressFn = _no_progress) -> CloneStream:
    """`Pipeline.clone` as a stream of `AudioChunk`s (same arguments; `mode` is the WaveRNN mode).

    Input errors (text, audio, weights) are raised before the first piece. Same seed,
    same inputs: same pieces. With Griffin-Lim each sentence is one piece.
    """
    sentences = pipe.prepare_text(text)
    synthesizer = pipe._require_synthesizer()
    if vocoder == "auto":
        vocoder = pipe.default_vocoder()
    if vocoder not in VOCODERS:
        raise ValueError(f"unknown vocoder {vocoder!r}: choose one of {', '.join(VOCODERS)}")
    if vocoder == "wavernn" and pipe.vocoder is None:
        pipe.vocode(np.zeros((80, 2), np.float32), vocoder)  # raises the missing-weights message
    if embedding is None:
        if reference_audio is None:
            raise ValueError("give a reference recording or a saved embedding")
        progress("encoding", 0.0, "reading the reference voice")
        embedding = pipe.embed(reference_audio, sample_rate)
        progress("encoding", 1.0, "voice embedded")
    embedding = np.asarray(embedding, dtype=np.float32)
    stream = CloneStream(sentences, embedding, vocoder)
    stream._chunks = _stream(pipe, synthesizer, stream, seed, mode, head, progress)
    return stream


def _stream(pipe, synthesizer, stream: CloneStream, seed, mode, head, progress) -> Iterator[AudioChunk]:
    sentences, embedding, vocoder = stream.sentences, stream.embedding, stream.vocoder
    synth_rng = make_generator(seed)
    vocoder_rng = make_generator(seed, pipe.device)
    out = _Output(len(sentences))
    # The first sentence alone, with a head; then all the others in one batch and one vocoder pass.
    # Parity mode reproduces `clone`: everything in one batch and one pass.
    first_alone = len(sentences) > 1 and not (vocoder == "wavernn" and mode == "parity")
    groups = [[0], list(range(1, len(sentences)))] if first_alone else [list(range(len(sentences)))]
    for g, group in enumerate(groups):
        progress("synthesizing", group[0] / len(sentences), f"sentence {group[0] + 1} of {len(sentences)}")
        mels = synthesizer.synthesize_spectrograms([sentences[k] for k in group], [embedding] * len(group),
                                                   generator=synth_rng, mode=mode)
        stream.mels.extend(mels)
        if vocoder == "griffinlim":
            for k, mel in zip(group, mels):
                wav = pipe.vocode(mel, "griffinlim", None if seed is None else seed + k, mode=mode)
                yield from out.sentence(wav, k)
                progress("vocoding", (k + 1) / len(sentences), f"sentence {k + 1} of {len(sentences)}")
            continue
        # One pass over the group's joined mels, cut at the joins as `clone` does.
        joins = list(np.cumsum([m.shape[1] for m in mels])[:-1] * synthesizer.hparams.hop_size)
        pieces = pipe.vocoder.stream_waveform(
            np.concatenate(mels, axis=1), head=head if g == 0 else 0, generator=vocoder_rng, mode=mode,
            first_samples=FIRST_CHUNK_SAMPLES if g == 0 else CHUNK_SAMPLES, min_samples=CHUNK_SAMPLES,
            ending=g == len(groups) - 1,  # a group that others follow keeps its last frame, unfaded
            progress=lambda done, total, k=group[-1]: progress("vocoding", done / total,
                                                               f"sentence {k + 1} of {len(sentences)}"))
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
    """Scales the pieces (see the module's notes on levels), numbers them and adds the pauses."""

    def __init__(self, sentences: int):
        self.sentences = sentences
        self.peak = OUTPUT_PEAK
        self.start = 0

    def add(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        if len(wav):
            self.peak = max(self.peak, float(np.max(np.abs(wav))))
            yield self._chunk(wav * (OUTPUT_PEAK / self.peak), sentence)

    def end_of(self, sentence: int) -> Iterator[AudioChunk]:
        if sentence < self.sentences - 1:
            yield self._chunk(np.zeros(int(SENTENCE_PAUSE_SECONDS * SAMPLE_RATE)), sentence)

    def sentence(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        yield from self.add(wav, sentence)
        yield from self.end_of(sentence)

    def _chunk(self, wav: np.ndarray, sentence: int) -> AudioChunk:
        chunk = AudioChunk(np.asarray(wav, dtype=np.float32), SAMPLE_RATE, self.start, sentence)
        self.start += len(wav)
        return chunk
