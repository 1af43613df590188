"""The windowed post-net's blocks of a decoding in progress, made as their context exists.

A stream (`Synthesizer.stream_ids`, `Synthesizer.synthesize_steps`) makes a mel's post-net
blocks (`Tacotron.postnet_block`) while the decoder goes on. In the int8 mode the decoder's
LSTM cells run on one thread (see `synthesizer.fast.decoding`), so on 2 cores the other
core idles through every decoder step, and the post-net is about 40 % of the producer's
arithmetic (a 64-frame block is about 30 decoder steps' worth). Given a `PostnetLane`,
the blocks after the first few run on the worker pool beside the next decoder steps. The
first blocks (small: the first audio waits for them) run where the decoder runs.

A block is the same call with the same intra-op thread count on either thread, so the
mels are the same bits; only the moment a block is ready changes.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import Callable

import torch

from deepfake_audio_core.threads import intra_op_threads, worker_pool
from synthesizer.model import POSTNET_CONTEXT, POSTNET_FIRST_BLOCKS, Tacotron, postnet_blocks

# Blocks that always run inline: the small first ones.
INLINE_BLOCKS = len(POSTNET_FIRST_BLOCKS)


class PostnetLane:
    """One post-net block at a time on the worker pool, for a caller that interleaves the
    decoder with other work. A block whose turn comes while another is in flight runs inline
    (both cores are then busy). Before the caller uses every core itself, `drain(step)`
    lets the decoder go on (`step()`: one more of its steps; False once it is done) until the
    block in flight is done, starting no new one meanwhile."""

    def __init__(self) -> None:
        self._running: Future | None = None
        self._draining = False
        self.submitted = 0  # blocks run on the worker so far

    def free(self) -> bool:
        """Whether a block may start on the worker now."""
        return not self._draining and not self.busy()

    def submit(self, model: Tacotron, mels: torch.Tensor, lo: int, hi: int) -> Future:
        threads = torch.get_num_threads()  # the caller's count (the decoding context's), kept on the worker
        self._running = worker_pool().submit(_block, model, mels, lo, hi, threads)
        self.submitted += 1
        return self._running

    def busy(self) -> bool:
        return self._running is not None and not self._running.done()

    def drain(self, step: Callable[[], bool]) -> None:
        self._draining = True
        try:
            while self.busy() and step():
                pass
        finally:
            self._draining = False


def _block(model: Tacotron, mels: torch.Tensor, lo: int, hi: int, threads: int) -> torch.Tensor:
    with intra_op_threads(threads):
        return model.postnet_block(mels, lo, hi)


class PostnetBlocks:
    """The decoder frames of one decoding (a batch of B mels) and their post-net blocks,
    started in order as their context exists (`early`; else all at the end) and handed back
    in order as they finish."""

    def __init__(self, model: Tacotron, max_frames: int, lane: PostnetLane | None = None, early: bool = True):
        self.model = model
        self.planned = postnet_blocks(max_frames)  # a shorter mel's blocks are a prefix (its last clipped)
        self.lane = lane
        self.early = early
        self.started = 0
        self.decoded = 0  # decoder frames so far
        self._frames: list[torch.Tensor] = []
        self._pending: deque[Future] = deque()

    def mels(self) -> torch.Tensor:
        """The decoder frames so far, (B, 80, decoded)."""
        if len(self._frames) > 1:
            self._frames = [torch.cat(self._frames, dim=2)]
        return self._frames[0]

    def add(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Take a decoder step's frames (B, 80, r); start each planned block whose context now
        exists; return the blocks (B, 80, hi - lo) finished since the last call, in order."""
        self._frames.append(frames)
        self.decoded += frames.size(2)
        while (self.early and self.started < len(self.planned)
               and self.planned[self.started][1] + POSTNET_CONTEXT <= self.decoded):
            lo, hi = self.planned[self.started]
            background = self.lane is not None and self.started >= INLINE_BLOCKS and self.lane.free()
            self._start(self.mels(), lo, hi, background)
        return self._collect(wait=False)

    def finish(self) -> list[torch.Tensor]:
        """Every block not handed back yet, once the decoding is done, in order (the ones left
        run inline, beside any still in flight): with those handed back before, the windowed
        post-net of `mels()` (`Tacotron.postnet_output(windowed=True)`)."""
        mels = self.mels()
        for lo, hi in postnet_blocks(mels.size(2))[self.started:]:
            self._start(mels, lo, hi, False)
        return self._collect(wait=True)

    def _start(self, mels: torch.Tensor, lo: int, hi: int, background: bool) -> None:
        if background:
            future = self.lane.submit(self.model, mels, lo, hi)
        else:
            future = Future()
            future.set_result(self.model.postnet_block(mels, lo, hi))
        self._pending.append(future)
        self.started += 1

    def _collect(self, wait: bool) -> list[torch.Tensor]:
        out = []
        while self._pending and (wait or self._pending[0].done()):
            out.append(self._pending.popleft().result())  # a worker's error is raised here
        return out
