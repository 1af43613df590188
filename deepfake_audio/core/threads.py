"""CPU threads for the fast inference paths: one shared worker pool, and a way to hand the
cores from torch's intra-op threads to it.

The fast vocoder and synthesizer run their own parallel work (WaveRNN fold groups, halves
of an LSTM cell's matmul) on plain threads, since fbgemm's fp16 matmul uses one thread
per call and torch releases the GIL inside it. While they do, torch's intra-op threads
are best kept at one: an intra-op thread woken by some small op competes with the
workers for the same cores (measured 10-15 % slower on 2 cores).
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

_lock = threading.Lock()
_pool: list[ThreadPoolExecutor] = []
_intra_op = {"users": 0, "restore": 0}


def worker_pool() -> ThreadPoolExecutor:
    """The shared pool: one worker per CPU beyond the first (the calling thread is the first)."""
    with _lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="deepfake-audio"))
        return _pool[0]


def cpu_threads() -> int:
    """torch's intra-op thread count as set by the user: what it is outside any
    `intra_op_threads` block (another request may be inside one right now)."""
    with _lock:
        return _intra_op["restore"] if _intra_op["users"] else torch.get_num_threads()


class IntraOpHold:
    """`intra_op_threads` for a generator: `enter` and `exit` may be called many times (say
    around each `yield`, so that the consumer's own work gets every thread back)."""

    def __init__(self, count: int):
        self.count = count
        self.held = False

    def enter(self) -> None:
        if self.count <= 0 or self.held:
            return
        with _lock:
            if _intra_op["users"] == 0:
                _intra_op["restore"] = torch.get_num_threads()
                torch.set_num_threads(self.count)
            _intra_op["users"] += 1
        self.held = True

    def exit(self) -> None:
        if not self.held:
            return
        with _lock:
            _intra_op["users"] -= 1
            if _intra_op["users"] == 0:
                torch.set_num_threads(_intra_op["restore"])
        self.held = False


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `count` (0 or less: leave it).

    The setting is process-wide, so overlapping callers (threads of a server) share it and
    the last one out restores the count the first one found.
    """
    hold = IntraOpHold(count)
    hold.enter()
    try:
        yield
    finally:
        hold.exit()
