"""Rolling folds: WaveRNN audio from a mel that is still being made, out in order without gaps.

The batched WaveRNN (`vocoder.fast`) cuts a whole mel into folds and runs them in lockstep:
fast, but a fold's audio is final only when the fold is done, so nothing can be played
until the first wave of folds ends, and it needs the whole mel first. Here a few slots
(two per thread) each run one fold at a time. When a slot's fold is done the slot takes
the next fold of the timeline, so folds end one after another and the final audio grows
steadily; a fold is started as soon as the mel frames it covers exist, so vocoding
starts after the synthesizer's first few decoder steps.

The timeline is cut by `RollingSchedule`: the first fold is short (1,600 samples) and each
one is 1.25 times the one before, up to 8,000 samples, so the first audio comes early
and later folds waste little on overlaps. The first three joins overlap by 200 samples
instead of 800: a short fold is mostly overlap otherwise. The cut depends only on the
mel's length, never on timing: fed all at once (`generate`) or frame by frame
(`stream`), the same mel and generator give the same samples, bit for bit.

On 2 cores the lockstep waves of the batched path are faster for a complete mel (it
keeps five folds per thread busy until the end; here two per thread, and the last folds
run with slots idle): this path trades some of that throughput for early, steady
audio. See bench/RESULTS.md for both.
"""
from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch

from deepfake_audio_core.emphasis import de_emphasis_part
from deepfake_audio_core.threads import IntraOpHold, intra_op_threads, worker_pool
from vocoder.audio import decode_mu_law
from vocoder.fast import CHUNK_STEPS, NATIVE_CHUNK_STEPS, FastWaveRNN, _Group, _inference
from vocoder.hparams import hparams as hp

# Mel frames whose conditioning is computed together (a block needs the 2 frames after it).
BLOCK_FRAMES = 16
# A driven producer (see `MelTimeline`) may use this much time after each chunk, relative to the chunk's.
PRODUCER_SHARE = 0.5
# Once pieces are out, a player started on the first one holds the audio released so far less
# the time since; the producer may run that much further ahead than its `lookahead`, less this
# reserve (s), so that bursts of its work (say, the start of a batch of sentences) come while
# the player has audio to spare, not when the next frames are due.
PLAYER_RESERVE_SECONDS = 0.5


@dataclass(frozen=True)
class RollingSchedule:
    """How the timeline is cut into folds. Fold i nominally has `length(i)` samples and
    overlaps fold i - 1 by `overlap_before(i)`; the fold that reaches the end runs to it."""

    slots_per_thread: int = 2
    first: int = 1600
    growth: float = 1.25
    longest: int = 8000
    overlap: int = hp.voc_overlap
    head_overlap: int = 200
    head_folds: int = 3
    min_last: int = 800  # a fold that would leave less than this after it runs to the end instead
    align: int = 1  # lengths are multiples of this (the loop's chunk: a fold then ends with a chunk)

    def length(self, i: int) -> int:
        nominal = min(self.longest, int(round(self.first * self.growth ** i)))
        return max(self.align, nominal // self.align * self.align)

    def overlap_before(self, i: int) -> int:
        if i == 0:
            return 0
        return self.head_overlap if i < self.head_folds else self.overlap

    def decide(self, i: int, start: int, total: int | None, available: int) -> int | None:
        """Samples of fold i (starting at `start`), or None while that cannot be known yet.

        `total`: samples of the whole output once the mel is complete, else None;
        `available`: samples whose conditioning exists. A fold that would leave less than
        `min_last` samples after it runs to the end instead; while the mel is incomplete a fold
        is decided only once more than that is known to follow, so the answer never
        depends on how early the frames came.
        """
        length = self.length(i)
        if total is not None:
            return total - start if start + length + self.min_last >= total else length
        return length if available > start + length + self.min_last else None

    def folds(self, total: int) -> list[tuple[int, int]]:
        """(start, length) of every fold for an output of `total` samples."""
        out, start, i = [], 0, 0
        while start < total:
            length = self.decide(i, start, total, total)
            out.append((start, length))
            if start + length >= total:
                break
            i += 1
            start += length - self.overlap_before(i)
        return out


class MelTimeline:
    """Mel frames (scaled to [-1, 1]) that arrive over time; thread-safe.

    `append` adds frames, `finish` says there are no more; `wait(n)` returns once at least
    `n` frames exist or the timeline is finished. The frames come either from another
    thread, or from a `producer` that the consumer drives itself: an iterator that does a
    small piece of work (one decoder step) per `next` and appends what it makes. On 2
    cores the latter is the faster: synthesizer and vocoder take turns with both cores
    instead of fighting over them. `wait` then runs the producer until the frames exist,
    and `work(seconds)` lets it run ahead for a while between two chunks of vocoding.
    """

    def __init__(self, n_mels: int = hp.num_mels):
        self._blocks: list[np.ndarray] = []
        self._frames = 0
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._tags: list[tuple[int, object]] = []  # (frames after an append, its tag)
        self.n_mels = n_mels
        self.cancelled = False  # set by the consumer when it stops early: the producer may stop too
        self.producer: Iterator[object] | None = None
        self.lookahead = 0  # `work` keeps the producer this many frames ahead of `frontier`
        self.frontier = 0  # frames the consumer has used so far
        # Until the consumer's first piece, `work` keeps the producer only this many frames ahead
        # (None: `lookahead`); 0: the producer runs only when frames are needed. Less work before
        # the first piece brings it sooner; the producer then catches up later.
        self.start_lookahead: int | None = None
        # For a producer with work in flight on another thread (say, a post-net block on the worker
        # pool): `drain(step)` runs `step` (one unit of the producer's work; False once it is done)
        # until nothing is in flight. `work` and `wait` call it before they return, so that the
        # consumer's next chunk has the cores to itself.
        self.drain: Callable[[Callable[[], bool]], None] | None = None

    def _step(self) -> bool:
        """One unit of the producer's work; False once it is done (the timeline is then finished)."""
        if self.producer is None or self._done:
            return False
        try:
            next(self.producer)
            return True
        except StopIteration:
            self.finish()
        except BaseException as exc:  # noqa: BLE001 - the consumer raises it from `wait`
            self.finish(exc)
        return False

    def work(self, seconds: float, lookahead: int | None = None) -> None:
        """Let the producer run for up to `seconds`, while it is less than `lookahead` (default:
        the attribute's) frames ahead of `frontier` (no-op without a producer)."""
        deadline = time.perf_counter() + seconds
        ahead = self.lookahead if lookahead is None else lookahead
        while self._frames < self.frontier + ahead and time.perf_counter() < deadline and self._step():
            pass
        self._drain()

    def _drain(self) -> None:
        if self.drain is not None:
            self.drain(self._step)

    @classmethod
    def complete(cls, mel: np.ndarray) -> "MelTimeline":
        timeline = cls(mel.shape[0])
        timeline.append(mel)
        timeline.finish()
        return timeline

    def append(self, frames: np.ndarray, tag: object = None) -> None:
        """Add frames (80, n); `tag` (say, how far the producer was) is kept for `tag_at`."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[0] != self.n_mels:
            raise ValueError(f"expected mel frames of shape ({self.n_mels}, n), got {frames.shape}")
        with self._cond:
            if frames.shape[1]:
                self._blocks.append(frames)
                self._frames += frames.shape[1]
                self._tags.append((self._frames, tag))
            self._cond.notify_all()

    def tag_at(self, frames: int) -> object:
        """The tag of the append that brought the timeline to at least `frames` frames (None: none yet)."""
        with self._cond:
            for count, tag in self._tags:
                if count >= frames:
                    return tag
            return None

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames; `error` (the producer's failure) is raised in the consumer."""
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def wait(self, frames: int) -> tuple[int, bool]:
        """Block until `frames` frames exist or the timeline is finished: (frames, finished)."""
        while self._frames < frames and self._step():
            pass
        self._drain()
        with self._cond:
            self._cond.wait_for(lambda: self._done or self._frames >= frames)
            if self._error is not None:
                raise self._error
            return self._frames, self._done

    def frames(self, lo: int, hi: int) -> np.ndarray:
        """Frames lo .. hi - 1 (80, hi - lo); they must exist."""
        with self._cond:
            if len(self._blocks) > 1:
                self._blocks = [np.concatenate(self._blocks, axis=1)]
            return self._blocks[0][:, lo:hi] if self._blocks else np.zeros((self.n_mels, 0), np.float32)


class _Rows:
    """A growing (rows, width) float32 table with one extra zero row at index `zero`."""

    def __init__(self, width: int, capacity: int = 256):
        self.table = torch.zeros(capacity + 1, width)
        self.count = 0

    @property
    def zero(self) -> int:
        return self.table.shape[0] - 1

    def extend(self, rows: torch.Tensor) -> None:
        need = self.count + rows.shape[0]
        if need > self.zero:
            grown = torch.zeros(max(need, 2 * self.zero) + 1, self.table.shape[1])
            grown[:self.count] = self.table[:self.count]
            self.table = grown
        self.table[self.count:need] = rows
        self.count = need


class _Conditioner:
    """Per-frame conditioning rows of a growing mel, in blocks of `BLOCK_FRAMES` frames.

    `mel_rows[f]`: frame f's mel projected into a period's columns; `frame_rows[f]`: its aux
    and constant part; `beyond`: the latter for samples past the end. A block is computed
    once the two frames after it exist (the aux ResNet's context) or the mel is complete,
    always over the same frames, so the rows do not depend on when frames arrived.
    """

    def __init__(self, fw: FastWaveRNN):
        self.fw = fw
        width = fw.layout.width
        self.mel_rows, self.frame_rows = _Rows(width), _Rows(width)
        a = torch.zeros(1, fw.aux * 4, dtype=torch.float64)
        self.beyond = self._frame_part(a)[0]

    @property
    def ready(self) -> int:
        return self.frame_rows.count

    def _frame_part(self, a: torch.Tensor) -> torch.Tensor:
        fw = self.fw
        u0 = a[:, :fw.aux] @ fw._w_a1.T + fw._b_i
        return (u0 @ fw._proj.T + a[:, fw.aux:] @ fw._aux_proj.T + fw._bias).float()

    def update(self, timeline: MelTimeline, frames: int, finished: bool, max_blocks: int | None = None) -> int:
        """Compute the blocks that the `frames` frames now in `timeline` allow (at most `max_blocks`);
        returns how many it computed. Computed as needed, a sentence that arrives whole (the
        rest of a batch) does not stall the stream while all its blocks are made at once."""
        pad = self.fw.pad
        done = 0
        while self.ready < frames and (max_blocks is None or done < max_blocks):
            lo = self.ready
            hi = min(lo + BLOCK_FRAMES, frames)
            if not finished and (hi < lo + BLOCK_FRAMES or frames < hi + pad):
                return done
            ctx_lo, ctx_hi = max(0, lo - pad), min(frames, hi + pad)
            window = timeline.frames(ctx_lo, ctx_hi)
            # zero padding where the window passes the mel's ends, as the batched path pads
            window = np.pad(window, ((0, 0), (pad - (lo - ctx_lo), pad - (ctx_hi - hi))))
            m = torch.from_numpy(window)[None].to(self.fw.device)
            with torch.inference_mode():
                aux = self.fw.upsample.resnet(m)[0].T.to(torch.float64).cpu()  # (hi - lo, 128)
                self.frame_rows.extend(self._frame_part(aux))
                self.mel_rows.extend(m[0, :, pad:pad + hi - lo].T.cpu() @ self.fw.mel_proj.cpu())
            done += 1
        return done


@dataclass
class StreamStats:
    """What a `stream` needed: `frames_needed` is the number of mel frames that the audio
    released so far depended on (a fold waits for the frames it covers and a little more);
    `folds` (start, frames needed) of each fold started so far."""

    frames_needed: int = 0
    folds: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Fold:
    start: int
    length: int
    fade_in: int  # overlap with the fold before (0 for the first)
    fade_out: int  # overlap with the fold after (0 for the last)
    done: int = 0


class _Assembler:
    """Overlap-adds fold samples and releases the final prefix, decoded and de-emphasised."""

    def __init__(self, n_classes: int, ending: bool):
        self.n_classes = n_classes
        self.ending = ending
        self.mixed = np.zeros(1 << 16)
        self.emitted = 0
        self.total: int | None = None  # samples of the whole output, once known (see `stream`'s `settle`)
        self.known = 0  # samples the output has at least
        self.state = np.zeros(1)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _fades(overlap: int) -> tuple[np.ndarray, np.ndarray]:
        """The cross-fade of a join: the new fold is silent for half the overlap, then fades in
        (equal power) while the old one fades out, as in the batched path."""
        silence = overlap // 2
        t = np.linspace(-1, 1, overlap - silence, dtype=np.float64)
        return (np.concatenate([np.zeros(silence), np.sqrt(0.5 * (1 + t))]),
                np.concatenate([np.sqrt(0.5 * (1 - t)), np.zeros(silence)]))

    def add(self, fold: _Fold, classes: np.ndarray) -> None:
        """Samples fold.done .. fold.done + len(classes) - 1 of `fold` (classes: int)."""
        steps = len(classes)
        y = (np.float32(2) * classes.astype(np.float32) / np.float32(self.n_classes - 1) - np.float32(1))
        y = y.astype(np.float64)
        pos = np.arange(fold.done, fold.done + steps)
        if fold.fade_in:
            head = pos < fold.fade_in
            if head.any():
                y[head] *= self._fades(fold.fade_in)[0][pos[head]]
        if fold.fade_out:
            tail = pos >= fold.length - fold.fade_out
            if tail.any():
                y[tail] *= self._fades(fold.fade_out)[1][pos[tail] - (fold.length - fold.fade_out)]
        end = fold.start + fold.done + steps
        if end > len(self.mixed):
            grown = np.zeros(max(end, 2 * len(self.mixed)))
            grown[:len(self.mixed)] = self.mixed
            self.mixed = grown
        self.mixed[fold.start + fold.done:end] += y
        fold.done += steps

    def take(self, ready: int, min_samples: int) -> np.ndarray | None:
        """The samples from the last release up to `ready`, if at least `min_samples` (or the end)."""
        fade = hp.fade_out_samples if self.ending else 0
        if self.total is None:
            # the output is at least `known` samples long: its final fade starts no earlier than this
            ready = min(ready, self.known - fade)
        else:
            ready = min(ready, self.total)
        at_end = self.total is not None and ready == self.total
        if ready - self.emitted < max(min_samples, 1) and not (at_end and ready > self.emitted):
            return None
        y = decode_mu_law(self.mixed[self.emitted:ready], self.n_classes, False)
        if hp.preemphasize:
            y, self.state = de_emphasis_part(y, hp.preemphasis, self.state)
        if self.total is not None and fade:
            fade_start = self.total - min(fade, self.total)
            if ready > fade_start:
                lo = max(self.emitted, fade_start)
                ramp = np.linspace(1, 0, self.total - fade_start)
                y[lo - self.emitted:] *= ramp[lo - fade_start:ready - fade_start]
        self.emitted = ready
        return y


def stream(fw: FastWaveRNN, timeline: MelTimeline, generator: torch.Generator | None = None,
           schedule: RollingSchedule = RollingSchedule(), first_samples: int = 400, min_samples: int = 1600,
           ending: bool = True, on_fold: Callable[[int, int, int], None] | None = None,
           stats: StreamStats | None = None) -> Iterator[np.ndarray]:
    """Yield the waveform of the mel in `timeline` (frames scaled to [-1, 1]) in order, as it becomes final.

    Chunks are float64 at 16 kHz; together they make 200 * (T - 1) samples for a T-frame
    mel (200 * T with `ending` False, and no final fade), post-processed as
    `FastWaveRNN.stream`. The first has at least `first_samples` samples, the others at
    least `min_samples` except the last. `on_fold(index, start, length)` is called as each
    fold is started, and `stats` is kept up to date (for tests and measurements).
    """
    # One intra-op thread while the folds run on threads of their own: torch's pool would
    # otherwise spin on the cores the fold groups need, and switching the count for every
    # chunk costs as much (a 5 s mel on 2 cores: RTF 0.82 instead of 0.94-1.10). Let go while
    # the consumer holds a piece, so that its own work has every thread.
    hold = IntraOpHold(1 if fw.threads() > 1 else 0)
    pieces = _stream(fw, timeline, generator, schedule, first_samples, min_samples, ending, on_fold, stats)
    try:
        while True:
            hold.enter()
            try:
                piece = next(pieces, None)
            finally:
                hold.exit()
            if piece is None:
                return
            yield piece
    finally:
        pieces.close()


def _stream(fw: FastWaveRNN, timeline: MelTimeline, generator: torch.Generator | None, schedule: RollingSchedule,
            first_samples: int, min_samples: int, ending: bool, on_fold: Callable[[int, int, int], None] | None,
            stats: StreamStats | None) -> Iterator[np.ndarray]:
    """`stream`'s work, run with its thread setting."""
    stats = stats if stats is not None else StreamStats()
    hop = fw.hop
    cond = _Conditioner(fw)
    threads = fw.threads()
    n_slots = schedule.slots_per_thread * threads
    loop = fw.native
    chunk = min(NATIVE_CHUNK_STEPS if loop else CHUNK_STEPS, hop - 1)  # at most two frames per chunk
    schedule = replace(schedule, align=chunk)
    dev = fw.device
    bounds = np.linspace(0, n_slots, min(threads, n_slots) + 1).round().astype(int)
    groups = [_Group(slice(a, b), chunk, fw.layout, fw.n_classes, dev, loop) for a, b in zip(bounds[:-1], bounds[1:])]
    slots: list[_Fold | None] = [None] * n_slots
    assembler = _Assembler(fw.n_classes, ending)
    noise = torch.empty(chunk, n_slots, 1, device=dev)
    kernel = torch.cat([fw.kernel.to(dev), fw.kernel.new_zeros(1, device=dev)])
    taps = math.ceil((chunk + len(fw.kernel)) / hop) + 1
    t = torch.arange(chunk + 1, device=dev)
    index, next_start, last_started, emitted_first, chunks_run = 0, 0, False, False, 0
    first_at = 0.0  # when the first piece went out

    def producer_lookahead() -> int | None:
        """Frames the producer may run ahead of the started folds (see `PLAYER_RESERVE_SECONDS`)."""
        if not emitted_first:
            return timeline.start_lookahead
        buffered = assembler.emitted / hp.sample_rate - (time.perf_counter() - first_at)
        return timeline.lookahead + max(0, int((buffered - PLAYER_RESERVE_SECONDS) * hp.sample_rate / hop))
    frames, finished = timeline.wait(1)

    def wave_length() -> int | None:
        """Samples of the whole output once the mel is complete, else None (for the fold decisions)."""
        return max(0, (frames - 1) * hop if ending else frames * hop) if finished else None

    def settle() -> None:
        """What the assembler may rely on, from the folds started so far, never from the frames that
        happen to exist: those depend on timing, and so would where pieces end (each piece is levelled
        and watermarked on its own). The output has at least the frames that the started folds
        needed; its length is final once the last fold has started."""
        need = max((n for _, n in stats.folds), default=0)
        assembler.known = max(0, (need - 1) * hop if ending else need * hop)
        assembler.total = total if last_started else None

    def available() -> int:
        # samples whose inputs are all known (see FastWaveRNN._run_wave's prefill)
        return min((cond.ready + fw.pad) * hop - fw.upsample.indent + fw.kernel_start, cond.ready * hop)

    while True:
        # Start folds in free slots, in timeline order; wait for frames when the next fold needs them.
        for s in range(n_slots):
            if slots[s] is not None or last_started:
                continue
            if index < n_slots and index > chunks_run:
                break  # the first folds start one chunk apart, so that they end one after another
            while True:
                total = wave_length()
                if total is not None and next_start >= total:
                    last_started = True
                    break
                length = schedule.decide(index, next_start, total, available())
                if length is not None:
                    break
                if not cond.update(timeline, frames, finished, max_blocks=1):  # else more frames are needed
                    frames, finished = timeline.wait(frames + 1)
            if last_started:
                break
            # the fold's conditioning (a decision on a complete mel does not look at it)
            while available() < next_start + length and cond.update(timeline, frames, finished, max_blocks=1):
                pass
            last = total is not None and next_start + length >= total
            # the frames this decision needed: all of them for the last fold, else enough for
            # `available()` to pass the fold's end by more than `min_last` (whole conditioning blocks)
            if last:
                need = frames
            else:
                blocks = -(-(next_start + length + schedule.min_last + 1 - fw.kernel_start) // hop // BLOCK_FRAMES)
                need = min(frames, blocks * BLOCK_FRAMES + fw.pad)
            stats.folds.append((next_start, need))
            fold = _Fold(next_start, length, schedule.overlap_before(index),
                         0 if last else schedule.overlap_before(index + 1))
            slots[s] = fold
            for g in groups:
                if g.folds.start <= s < g.folds.stop:
                    _reset(g, s - g.folds.start)
            if on_fold is not None:
                on_fold(index, next_start, length)
            index += 1
            next_start += length - fold.fade_out
            last_started = last
        running = [f for f in slots if f is not None]
        if not running:
            break
        # Take in whatever frames have arrived meanwhile (never waits); their conditioning is made
        # when a fold needs it.
        if not finished:
            frames, finished = timeline.wait(0)
        total = wave_length()
        settle()
        began = time.perf_counter()
        _run_chunk(fw, groups, slots, cond, noise, kernel, taps, t, chunk, generator)
        chunks_run += 1
        timeline.frontier = max(timeline.frontier, max(need for _, need in stats.folds))
        timeline.work(PRODUCER_SHARE * (time.perf_counter() - began), producer_lookahead())
        classes = torch.cat([g.classes for g in groups], dim=1).cpu().numpy()  # (chunk, slots)
        for s, fold in enumerate(slots):
            if fold is None:
                continue
            steps = min(chunk, fold.length - fold.done)
            assembler.add(fold, classes[:steps, s])
            if fold.done >= fold.length:
                slots[s] = None
        ready = next_start if not last_started else (total if total is not None else next_start)
        for fold in slots:
            if fold is not None:
                ready = min(ready, fold.start + fold.done)
        piece = assembler.take(ready, min_samples if emitted_first else first_samples)
        if piece is not None:
            first_at = first_at if emitted_first else time.perf_counter()
            emitted_first = True
            _note_needs(stats, assembler.emitted)
            yield piece
    total = wave_length()
    settle()
    piece = assembler.take(assembler.total or 0, 0)
    if piece is not None and len(piece):
        _note_needs(stats, assembler.emitted)
        yield piece


def _note_needs(stats: StreamStats, end: int) -> None:
    """The frames the audio before sample `end` needed: those of every fold that starts before it."""
    stats.frames_needed = max([stats.frames_needed] + [need for start, need in stats.folds if start < end])


def generate(fw: FastWaveRNN, mel: torch.Tensor, generator: torch.Generator | None = None,
             schedule: RollingSchedule = RollingSchedule(), ending: bool = True) -> np.ndarray:
    """The whole waveform of a complete (1, 80, T) mel in [-1, 1]: `stream`'s chunks joined."""
    timeline = MelTimeline.complete(mel[0].cpu().numpy())
    chunks = list(stream(fw, timeline, generator, schedule, 1 << 62, 1 << 62, ending))
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _reset(g: _Group, b: int) -> None:
    """A new fold in slot b of group g: the network starts from zero state."""
    g.carry[b].zero_()
    if g.native:
        g.h1x[b].zero_()
        g.h2[b].zero_()
    else:
        for s in g.state:
            s[b].zero_()


def _run_chunk(fw: FastWaveRNN, groups: list[_Group], slots: list[_Fold | None], cond: _Conditioner,
               noise: torch.Tensor, kernel: torch.Tensor, taps: int, t: torch.Tensor, chunk: int,
               generator: torch.Generator | None) -> None:
    """One chunk of `chunk` steps for every slot (idle slots run on zero inputs; their samples are dropped)."""
    dev, hop = fw.device, fw.hop
    starts = torch.tensor([[f.start + f.done if f else 0] for f in slots], device=dev)
    ends = torch.tensor([[f.start + f.length if f else 0] for f in slots], device=dev)
    n = starts + t  # (B, chunk + 1) sample index of each step
    valid = n < ends
    u = n + fw.upsample.indent
    f_lo = torch.div(u[:, :1] - fw.kernel_start - len(fw.kernel) + 1, hop, rounding_mode="floor")
    f = f_lo + torch.arange(taps, device=dev)  # (B, taps) padded frame indices
    k = u[:, :, None] - hop * f[:, None, :] - fw.kernel_start
    inside = (k >= 0) & (k < len(fw.kernel)) & valid[:, :, None]
    weights = kernel[torch.where(inside, k, len(fw.kernel))]
    orig = f - fw.pad  # frame index in the mel; outside it, the padding's zero row
    mel_rows = cond.mel_rows.table
    orig = torch.where((orig >= 0) & (orig < cond.mel_rows.count), orig, cond.mel_rows.zero)
    count = cond.frame_rows.count  # index standing for "past the end": the `beyond` row
    q = torch.where(valid, torch.div(n, hop, rounding_mode="floor"), count).clamp_max(count)
    q0, q1 = q[:, :1], q[:, -1:]
    x = torch.cat([weights, (q == q0)[:, :, None].float(), ((q == q1) & (q1 != q0))[:, :, None].float()], 2)

    def frame_part(qi: torch.Tensor) -> torch.Tensor:  # (B, 1) -> (B, 1, width)
        rows = cond.frame_rows.table[qi.clamp_max(max(count - 1, 0))]
        return torch.where((qi < count)[:, :, None], rows, cond.beyond)

    y = torch.cat([mel_rows[orig], frame_part(q0), frame_part(q1)], 1)
    noise.uniform_(generator=generator)
    if all(g.native for g in groups):
        _run_native(fw, groups, slots, x, y, noise, chunk)
        return
    with intra_op_threads(1 if len(groups) > 1 else 0):
        jobs = [(fw._run_group, (g, x, y, noise, chunk, False)) for g in groups]
        futures = [worker_pool().submit(_inference, fn, args) for fn, args in jobs[1:]]
        _inference(*jobs[0])
        for future in futures:
            future.result()


def _run_native(fw: FastWaveRNN, groups: list[_Group], slots: list[_Fold | None], x: torch.Tensor, y: torch.Tensor,
                noise: torch.Tensor, steps: int) -> None:
    """One chunk of the native loop for every group, side by side (threads started in C).

    The loop's time is per fold, so only busy slots run: a group with idle slots has its
    busy ones' state gathered into a smaller batch and put back afterwards. Idle slots keep
    stale state and classes, which nothing reads (a new fold resets its slot).
    """
    calls, gathered = [], []
    for g in groups:
        active = [s - g.folds.start for s in range(g.folds.start, g.folds.stop) if slots[s] is not None]
        if len(active) == g.folds.stop - g.folds.start:
            calls.append((x[g.folds], y[g.folds], g.carry, noise[:, g.folds, 0], g.classes, g.h1x, g.h2, g.scratch))
        elif active:
            local = torch.tensor(active)
            busy = local + g.folds.start
            carry, h1x, h2 = g.carry[local], g.h1x[local], g.h2[local]
            classes = torch.empty(g.classes.shape[0], len(active), dtype=g.classes.dtype)
            calls.append((x[busy], y[busy], carry, noise[:, busy, 0], classes, h1x, h2, g.scratch))
            gathered.append((g, local, carry, h1x, h2, classes))
    if calls:
        fw.native.run_many(calls, steps)
    for g, local, carry, h1x, h2, classes in gathered:
        g.carry[local], g.h1x[local], g.h2[local] = carry, h1x, h2
        g.classes[:, local] = classes
