"""Streaming clone: the cloned speech in pieces, each yielded as soon as it is final.

    from deepfake_audio import Pipeline
    from deepfake_audio.streaming import stream_clone
    pipe = Pipeline()
    for chunk in stream_clone(pipe, "me.wav", "First sentence. Second one.", seed=1):
        play(chunk.audio, chunk.sample_rate)        # float32 in [-0.97, 0.97]

With WaveRNN in the fast modes (the default) sound starts after a few decoder steps, not
after a sentence: the synthesizer hands over its mel frames as its decoder makes them
(`Synthesizer.stream_ids`: the first sentence alone, then the second, then batches of 2, 4,
8, ... (`ClonePlan.groups`), whose first sentence also comes frame by frame and the rest
when the batch ends), while
the vocoder runs rolling folds over the frames that exist (`vocoder.rolling`); the
vocoder runs the decoder between its own chunks, so the two take turns on the cores. The
sentences are one timeline for the vocoder, as in `clone`. `clone(rolling=True)` runs the
same folds: joined, a stream's pieces are its audio for the same seed, sample for sample,
before the level and the watermark (below); the default `clone` runs the faster lockstep
folds, so its samples differ. Parity mode, the starter vocoder and Griffin-Lim go a sentence at a time.

Each piece says when it was ready (`at`, seconds from the call) and how many of the
first sentence's decoder steps it needed (`decoder_steps`); `playback_gaps` turns the
former into the silences a player would have to wait through. Once the stream has run out,
`CloneStream.result()` is its `CloneResult`: the pieces joined, as they were played.

Levels: `clone` scales its whole output to a 0.97 peak, which a stream cannot know in
advance. Here each piece is scaled by min(1, 0.97 / loudest sample so far): quiet
speech is left as the vocoder made it and nothing clips. Both lay out the lead, the
sentences and the pauses with the plan's `deepfake_audio.assembly.Timeline`.

Watermark: each piece is marked as it goes out (`watermark.StreamWatermarker`, with the
audio before it as context), so the pieces carry the watermark as `clone`'s output does;
they are not bit-identical to a clip marked whole.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepfake_audio_core.modes import arithmetic
from deepfake_audio_core.rng import make_generator
from deepfake_audio.assembly import Timeline
from deepfake_audio.watermark import StreamWatermarker
from deepfake_audio.pipeline import (HOP_SIZE, PER_SENTENCE_VOCODERS, SAMPLE_RATE, ClonePlan, CloneResult, Pipeline,
                                     ProgressEvent, ProgressFn, no_progress)

# Samples at the start of the first sentence generated before the rest, in short folds.
HEAD_SAMPLES = 4000
# The first piece is yielded once this many samples are final; later ones are at least `CHUNK_SAMPLES`.
FIRST_CHUNK_SAMPLES = 400
CHUNK_SAMPLES = 3200
# Rolling folds: samples of the first piece, per WaveRNN arithmetic (`deepfake_audio_core.modes`).
# Later pieces come as soon as 800 samples are final. The first piece waits at least for the
# first fold (less its overlap with the second): until then the audio grows only as fast as
# one fold is sampled, slower than it plays. int8 (about 3 times the speed of fp16 where the
# CPU has VNNI) can afford a first piece of 0.25 s, which lets a player start ahead of the
# head folds: then no stalls on 2 cores. fp16 cannot keep up with playback on 2 cores anyway,
# so it starts as early as it can. Before the first piece the decoder runs only when the
# vocoder needs frames (`MelTimeline.start_lookahead` 0; it catches up later).
# bench/RESULTS.md has the measurements behind both.
ROLLING_FIRST_SAMPLES = {"int8": 4000, "fp16": 1400}
ROLLING_MIN_SAMPLES = 800
# Between chunks of vocoding the synthesizer keeps this far (mel frames: 0.2 s) ahead of what the
# started folds need, plus what the player has buffered beyond half a second
# (`vocoder.rolling.PLAYER_RESERVE_SECONDS`). Further ahead early on, its bursts right after
# the first piece (when a player's buffer is thinnest) cost gaps: side by side, int8 with the
# AVX2 kernel on 2 cores, 6 runs each, 40 frames gave gaps in 4 of 6 runs of a 5 s text
# (0.05 s median), 16 frames in 1 of 6 (earlier, 160 against 40 frames: the same).
PRODUCER_LOOKAHEAD_FRAMES = 16


@dataclass
class AudioChunk:
    """One piece of a streamed clone."""

    audio: np.ndarray  # float32 (samples,) at `sample_rate`, within [-0.97, 0.97]
    sample_rate: int
    start: int  # samples of the whole output that came before this piece
    sentence: int  # index into the sentences of the text (a pause belongs to the sentence before it)
    at: float = 0.0  # seconds from the `stream_clone` call until this piece was ready
    decoder_steps: int = 0  # decoder steps of the first sentence that this piece needed (0: not counted)


def playback_gaps(chunks: list[AudioChunk]) -> list[float]:
    """Silences (s) a player hears that starts with the first piece as it arrives and then plays
    each piece right after the one before, waiting whenever the next is not ready yet."""
    gaps: list[float] = []
    clock = None
    for chunk in chunks:
        if clock is not None and chunk.at > clock:
            gaps.append(chunk.at - clock)
        clock = max(clock if clock is not None else chunk.at, chunk.at) + len(chunk.audio) / chunk.sample_rate
    return gaps


class CloneStream:
    """Iterator of `AudioChunk`s that also keeps what the clone is made of.

    `plan` (sentences, embedding, vocoder, ...) is set from the start; `mels` (one
    (80, frames) per sentence, in order) fills in as sentences are synthesized and is
    complete once the stream is exhausted. Then `result` gives the `CloneResult` of what
    was played.
    """

    def __init__(self, plan: ClonePlan, began: float | None = None, keep_audio: bool = True):
        self.plan = plan
        self.keep_audio = keep_audio  # False: pieces are not kept (a server relaying them), no `result`
        self.mels: list[np.ndarray] = []
        self._chunks: Iterator[AudioChunk] = iter(())
        self._began = time.perf_counter() if began is None else began  # `time.perf_counter()` at the start
        self._played: list[np.ndarray] = []  # the audio of every piece so far
        self._seconds: float | None = None  # from the start until exhausted; None before
        self._closed = False

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
        try:
            chunk = next(self._chunks)
        except StopIteration:
            if not self._closed and self._seconds is None:
                self._seconds = time.perf_counter() - self._began
            raise
        if self.keep_audio:
            self._played.append(chunk.audio)
        return chunk

    def result(self) -> CloneResult:
        """The finished clone as `Pipeline.clone` gives it: the pieces joined (what was played,
        float32 (samples,) at 16 kHz, peak at most 0.97), the mels, and in `seconds` the time
        from the `stream_clone` call until the stream ran out ("streaming"). RuntimeError
        until the stream is exhausted, and for a stream stopped early."""
        if not self.keep_audio:
            raise RuntimeError("This stream was made with keep_audio=False: it kept no audio to join.")
        if self._closed or self._seconds is None:
            raise RuntimeError("The stream's result is known only once every piece has been read "
                               + ("(it was closed early)." if self._closed else "(it has not run out yet)."))
        wav = np.concatenate(self._played) if self._played else np.zeros(0, np.float32)
        return CloneResult(wav, SAMPLE_RATE, self.embedding, list(self.mels), self.sentences, self.vocoder,
                           {"streaming": self._seconds}, self.plan.note)

    def close(self) -> None:
        """Stop early (a listener who has heard enough): no more pieces are made."""
        self._closed = self._seconds is None
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def stream_clone(pipe: Pipeline, reference_audio: str | Path | np.ndarray | None = None, text: str = "",
                 seed: int | None = None, vocoder: str = "auto", *, embedding: np.ndarray | None = None,
                 sample_rate: int | None = None, mode: str = "fast", head: int = HEAD_SAMPLES,
                 progress: ProgressFn = no_progress, plan: ClonePlan | None = None, pace: float = 1.0,
                 voices=None, pitch: float = 0.0, keep_audio: bool = True, tuned=None) -> CloneStream:
    """`Pipeline.clone` as a stream of `AudioChunk`s (same arguments; `mode` is the WaveRNN mode).

    `keep_audio` False: the pieces are not kept for `CloneStream.result` (a caller that only
    relays them, such as a server, then holds no more than one piece of audio).

    Input errors (text, audio, weights) are raised before the first piece. Same seed,
    same inputs: same pieces. With the starter vocoder or Griffin-Lim each sentence is one piece. A `plan`
    made by `Pipeline.plan` replaces the request arguments.
    """
    began = time.perf_counter()  # pieces are timed from here: the plan (embedding the voice) counts
    if plan is None:
        plan = pipe.plan(reference_audio, text, seed, vocoder, embedding=embedding, sample_rate=sample_rate,
                         mode=mode, progress=progress, pace=pace, voices=voices, pitch=pitch, tuned=tuned)
    stream = CloneStream(plan, began, keep_audio)
    stream._chunks = _stream(pipe, stream, head, progress, began)
    return stream


def _stream(pipe: Pipeline, stream: CloneStream, head: int, progress: ProgressFn,
            began: float) -> Iterator[AudioChunk]:
    plan = stream.plan
    out = _Output(plan, StreamWatermarker(SAMPLE_RATE) if pipe.watermark else None, began)
    yield from out.lead()
    if plan.rolling:
        yield from _stream_frames(pipe, stream, out, progress)
    else:
        yield from _stream_sentences(pipe, stream, out, head, progress)


def _stream_frames(pipe: Pipeline, stream: CloneStream, out: "_Output", progress: ProgressFn) -> Iterator[AudioChunk]:
    """WaveRNN in a fast mode: rolling folds here over the mel frames of a synthesizer that they drive."""
    plan = stream.plan
    n = len(plan.sentences)
    parts = pipe.rolling_parts()
    timeline, lane, scale = parts.timeline, parts.lane, parts.scale
    lengths: list[int] = []  # frames of each finished sentence, in order (the producer appends)

    def produce() -> Iterator[None]:
        """The synthesis in small steps (one decoder step each), appending frames as they are made."""
        generator = make_generator(plan.seed)
        # a batch spoken by several tuned voices (a script) goes a sentence at a time: one model each
        groups = [part for group in plan.groups() for part in
                  ([group] if len({id(plan.tuned_of(k)) for k in group}) == 1 else [[k] for k in group])]
        for group in groups:
            synthesizer = pipe.synthesizer_for(plan, group[0])
            if len(group) == 1:  # frame by frame, tagged with the decoder steps so far
                k, pieces = group[0], []
                for piece, steps in synthesizer.stream_ids(plan.ids[k], plan.voice_of(k), generator, plan.mode,
                                                           plan.pace, each_step=True, lane=lane,
                                                           pitch=plan.pitch_request(k)):
                    if piece.shape[1]:
                        pieces.append(piece)
                        timeline.append(piece * scale, tag=steps)
                    yield
                mels = [np.concatenate(pieces, axis=1)]
                lengths.append(mels[0].shape[1])
            else:  # a batch: its first sentence's frames as they are made, the others at its end
                made = [0]  # frames of the sentence being handed over

                def emit(frames: np.ndarray, done: bool) -> None:
                    if frames.shape[1]:
                        timeline.append(frames * scale)
                        made[0] += frames.shape[1]
                    if done:  # known before any frame of the next sentence arrives
                        lengths.append(made[0])
                        made[0] = 0
                # one pitch request per batch; a batch of sentences in voices of other pitches (a
                # script) leaves a pitch-conditioned model to guess each voice's pitch from its embedding
                requests = {plan.pitch_request(k) for k in group}
                mels = yield from synthesizer.synthesize_steps([plan.ids[k] for k in group],
                                                               [plan.voice_of(k) for k in group], generator,
                                                               plan.mode, plan.pace, emit=emit, lane=lane,
                                                               pitch=requests.pop() if len(requests) == 1 else None)
            stream.mels.extend(mels)

    first_samples, timeline.start_lookahead = ROLLING_FIRST_SAMPLES[arithmetic(plan.mode)], 0
    timeline.producer = produce()
    timeline.drain = lane.drain
    timeline.lookahead = PRODUCER_LOOKAHEAD_FRAMES
    progress(ProgressEvent("synthesizing", 0, n, "sentence"))
    stats = parts.stats
    pieces = pipe.vocoder.rolling_waveform(timeline, make_generator(plan.seed, pipe.device), mode=plan.mode,
                                           first_samples=first_samples, min_samples=ROLLING_MIN_SAMPLES,
                                           stats=stats)
    position, k, reported = 0, 0, 0
    try:
        for piece in pieces:
            steps = timeline.tag_at(stats.frames_needed)
            out.decoder_steps = int(steps) if isinstance(steps, int) else out.decoder_steps
            while reported < len(lengths):
                reported += 1
                progress(ProgressEvent("synthesizing", reported, n, "sentence"))
            if len(lengths) == n:  # the length of the whole is known once every sentence is made
                progress(ProgressEvent("vocoding", position + len(piece), max(sum(lengths) * HOP_SIZE, 1)))
            while len(piece):
                join = sum(lengths[:k + 1]) * HOP_SIZE if k < n - 1 and k < len(lengths) else None
                take = len(piece) if join is None else min(len(piece), join - position)
                yield from out.add(piece[:take], k)
                position, piece = position + take, piece[take:]
                if join is not None and position == join:
                    yield from out.end_of(k)
                    k += 1
        yield from out.end_of(n - 1)
    finally:
        timeline.cancelled = True


def _stream_sentences(pipe: Pipeline, stream: CloneStream, out: "_Output", head: int,
                      progress: ProgressFn) -> Iterator[AudioChunk]:
    """The starter vocoder, Griffin-Lim, or WaveRNN in parity mode: each group of sentences synthesized,
    then vocoded (a sentence at a time, but WaveRNN)."""
    plan = stream.plan
    n = len(plan.sentences)
    synth_rng = make_generator(plan.seed)
    vocoder_rng = make_generator(plan.seed, pipe.device)
    groups = plan.groups()
    progress(ProgressEvent("synthesizing", 0, n, "sentence"))
    for g, group in enumerate(groups):
        mels = pipe.synthesize_plan(plan, group, generator=synth_rng)
        stream.mels.extend(mels)
        progress(ProgressEvent("synthesizing", group[-1] + 1, n, "sentence"))
        if plan.vocoder in PER_SENTENCE_VOCODERS:
            for k, mel in zip(group, mels):
                wav = pipe.vocode_sentence(plan, k, mel)
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
    the pauses: the plan's `Timeline` says how."""

    def __init__(self, plan: ClonePlan, marker: StreamWatermarker | None, began: float):
        self.plan = plan
        self.timeline = Timeline(plan, SAMPLE_RATE)
        self.marker = marker
        self.start = 0
        self.began = began  # `time.perf_counter()` at the `stream_clone` call
        self.decoder_steps = 0

    def add(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        if len(wav):
            yield self._chunk(self.timeline.level(wav), sentence)

    def lead(self) -> Iterator[AudioChunk]:
        """The silence a script asked for before its first sentence."""
        if self.plan.lead:
            yield self._chunk(self.timeline.lead(), 0)

    def end_of(self, sentence: int) -> Iterator[AudioChunk]:
        """The pause after a sentence, if any."""
        pause = self.timeline.pause_after(sentence)
        if len(pause):
            yield self._chunk(pause, sentence)

    def sentence(self, wav: np.ndarray, sentence: int) -> Iterator[AudioChunk]:
        yield from self.add(wav, sentence)
        yield from self.end_of(sentence)

    def _chunk(self, wav: np.ndarray, sentence: int) -> AudioChunk:
        wav = np.asarray(wav, dtype=np.float32)
        if self.marker is not None:
            # The mark moves a few samples by up to a few hundredths: keep the promised peak.
            wav = np.clip(self.marker.mark(wav), -self.timeline.peak, self.timeline.peak)
        chunk = AudioChunk(wav, SAMPLE_RATE, self.start, sentence, time.perf_counter() - self.began,
                           self.decoder_steps)
        self.start += len(wav)
        return chunk
