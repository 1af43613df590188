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
_process: dict[str, int | None] = {"threads": None}
_local = threading.local()  # .holds: the calling thread's holds now entered


def worker_pool() -> ThreadPoolExecutor:
    """The shared pool: one worker per CPU beyond the first (the calling thread is the first)."""
    with _lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="deepfake-audio"))
        return _pool[0]


def _fresh_thread_count() -> int:
    """torch's process-wide setting, as a thread that has never run torch takes it (about 2 ms)."""
    box: list[int] = []
    probe = threading.Thread(target=lambda: box.append(torch.get_num_threads()), name="deepfake-audio-probe")
    probe.start()
    probe.join()
    return box[0]


def cpu_threads() -> int:
    """torch's intra-op thread count as the user set it, the same in every thread.

    The fast paths split their work by it (fold groups, halves of a matmul), and the split
    decides the samples a seed gives, so it must not depend on the thread asking.
    `torch.get_num_threads()` does: OpenMP keeps the count per thread, and a thread takes
    torch's process setting when it first runs torch, so a server's worker thread that
    started while another request held the count at one (`IntraOpHold`) answers 1 for good.
    Hence the answer is the main thread's count (what a script's `torch.set_num_threads`
    sets), else the last one known, else what a new thread gets; inside a hold, the count
    the first holder found.
    """
    with _lock:
        if _intra_op["users"]:
            return _intra_op["restore"]
        return _process_count()


def _process_count() -> int:
    """`cpu_threads` outside any hold (call with `_lock` held)."""
    if threading.current_thread() is threading.main_thread():
        _process["threads"] = torch.get_num_threads()
    elif _process["threads"] is None:
        _process["threads"] = _fresh_thread_count()
    return _process["threads"]


class IntraOpHold:
    """`intra_op_threads` for a generator: `enter` and `exit` may be called many times (say
    around each `yield`, so that the consumer's own work gets every thread back), each
    `exit` on the thread of the `enter` before it.

    The count is per thread (see `cpu_threads`): `enter` sets the calling thread's; `exit`
    puts back what it was, or, as the last hold ends, the user's count (a thread that
    started during another hold would otherwise keep one thread for good).
    """

    def __init__(self, count: int):
        self.count = count
        self.held = False
        self.before = 0

    def enter(self) -> None:
        if self.count <= 0 or self.held:
            return
        with _lock:
            if _intra_op["users"] == 0:
                _intra_op["restore"] = _process_count()
            _intra_op["users"] += 1
            self.before = torch.get_num_threads()
            if self.before != self.count:
                torch.set_num_threads(self.count)
        _local.holds = getattr(_local, "holds", 0) + 1
        self.held = True

    def exit(self) -> None:
        if not self.held:
            return
        with _lock:
            _intra_op["users"] -= 1
            count = self.before if _intra_op["users"] else _intra_op["restore"]
            if torch.get_num_threads() != count:
                torch.set_num_threads(count)
        _local.holds -= 1
        self.held = False


def use_user_threads() -> None:
    """Give the calling thread the user's intra-op count unless it is inside a hold (for the
    start of a request: a worker thread that started during another request's hold would
    otherwise run torch on one thread)."""
    if getattr(_local, "holds", 0):
        return
    count = cpu_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with the calling thread's intra-op thread count set to `count` (0 or
    less: leave it); see `IntraOpHold`. Overlapping callers (threads of a server) each set
    their own thread's, and the last one out gives it the user's count.
    """
    hold = IntraOpHold(count)
    hold.enter()
    try:
        yield
    finally:
        hold.exit()
