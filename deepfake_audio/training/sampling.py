"""Which items form the batch of a step: a pure function of (seed, step, rank), so a
resumed run sees exactly the batches an uninterrupted one would have, and each rank
gets its own share of every epoch."""
from __future__ import annotations

import numpy as np
import torch

from deepfake_audio.training import TrainingError


def step_seed(seed: int, step: int, rank: int = 0, salt: int = 0) -> int:
    """A seed that depends on (seed, step, rank, salt) only, for exactly repeatable steps."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729 + salt * 15_485_863) % (2**63 - 1)


class SampleStream:
    """An endless sequence of item indices: epoch after epoch, each a fresh permutation.

    Element p is `perm_e[p mod n]` with e = p // n and perm_e seeded by (seed, e), so any
    stretch of it can be recomputed from its position alone.
    """

    def __init__(self, n_items: int, seed: int):
        if n_items <= 0:
            raise TrainingError("No training items.")
        self.n = n_items
        self.seed = seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, salt=1))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm

    def take(self, position: int, count: int) -> list[int]:
        return [int(self._permutation(p // self.n)[p % self.n]) for p in range(position, position + count)]


class StepBatchSampler:
    """Batches of (index, key) pairs for steps `start_step`..`end_step` of this rank.

    `phases` gives the per-rank batch size as [(until_step, size), ...]; the last size
    holds for ever after. The global batch of a step is the next `size * world_size`
    items of the stream and rank r takes its r-th share (a distributed sampler). `key`
    identifies the draw so that a dataset can seed its own randomness (crops, windows)
    from it.
    """

    def __init__(self, stream: SampleStream, phases: list[tuple[int, int]], start_step: int,
                 end_step: int | None, rank: int = 0, world_size: int = 1, fixed: bool = False):
        self.stream = stream
        self.phases = phases
        self.start_step = start_step
        self.end_step = end_step
        self.rank = rank
        self.world_size = world_size
        self.fixed = fixed  # --overfit-batch: the first batch, every step

    def batch_size(self, step: int) -> int:
        return next((size for until, size in self.phases if step < until), self.phases[-1][1])

    def position(self, step: int) -> int:
        """Stream position at which the global batch of `step` starts."""
        if self.fixed:
            return 0
        total, begin = 0, 0
        for until, size in self.phases:
            if step <= begin:
                break
            total += (min(step, until) - begin) * size if until > begin else 0
            begin = max(begin, until)
        if step > begin:
            total += (step - begin) * self.phases[-1][1]
        return total * self.world_size

    def __iter__(self):
        step = self.start_step
        position = self.position(step)
        while self.end_step is None or step < self.end_step:
            size = self.batch_size(step)
            key = 0 if self.fixed else step
            indices = self.stream.take(position + self.rank * size, size)
            yield [(index, key * 1_000_000 + k) for k, index in enumerate(indices)]
            if not self.fixed:
                position += size * self.world_size
            step += 1

    def __len__(self):
        return (self.end_step - self.start_step) if self.end_step is not None else 2**31


class LengthBuckets(torch.utils.data.Sampler):
    """Batches of similar length for steps `start`..`end`, each a pure function of (seed, step).

    Steps come in groups of up to `group` steps; a group takes the next (steps x batch)
    items of an endless stream of epoch permutations, sorts them by length, cuts them
    into batches and shuffles the order of those batches. Little compute goes to padding,
    and every item is still seen once per epoch.
    """

    def __init__(self, lengths: np.ndarray, batch: int, seed: int, start: int, end: int, group: int = 50,
                 fixed: bool = False):
        if len(lengths) == 0:
            raise TrainingError("No training items.")
        self.lengths, self.seed, self.start, self.end = np.asarray(lengths), seed, start, end
        self.batch = max(1, min(batch, len(lengths)))
        self.group = max(1, min(group, len(lengths) // self.batch))  # steps per group
        self.fixed = fixed  # --overfit-batch: the first batch, every step
        self._cache: dict[int, list[list[int]]] = {}

    def _stream(self, position: int, count: int) -> np.ndarray:
        n = len(self.lengths)
        out = []
        while count > 0:
            epoch, offset = divmod(position, n)
            perm = np.random.default_rng(step_seed(self.seed, epoch, salt=1)).permutation(n)
            take = perm[offset:offset + count]
            out.append(take)
            position += len(take)
            count -= len(take)
        return np.concatenate(out)

    def batches_of_group(self, g: int) -> list[list[int]]:
        if g not in self._cache:
            items = self._stream(g * self.group * self.batch, self.group * self.batch)
            items = items[np.argsort(self.lengths[items], kind="stable")]
            batches = [items[i * self.batch:(i + 1) * self.batch].tolist() for i in range(self.group)]
            order = np.random.default_rng(step_seed(self.seed, g, salt=2)).permutation(self.group)
            self._cache = {g: [batches[i] for i in order]}
        return self._cache[g]

    def __iter__(self):
        for step in range(self.start, self.end):
            g, k = divmod(0 if self.fixed else step, self.group)
            yield [(index, step) for index in self.batches_of_group(g)[k]]

    def __len__(self) -> int:
        return max(0, self.end - self.start)
