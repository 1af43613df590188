"""Scale-out: the training commands read the variables `torchrun` sets, join the process
group (NCCL on GPUs, gloo on CPU) and wrap the model in DistributedDataParallel. Only
rank 0 writes checkpoints, logs and samples."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from deepfake_audio.training import TrainingError


@dataclass
class Distributed:
    """This process's place in a (possibly one-process) training job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def setup(cls, device: str | None = None) -> "Distributed":
        """Join the job `torchrun` started (WORLD_SIZE > 1), or run alone.

        GPUs use NCCL and one device per process (LOCAL_RANK); CPUs use gloo.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise TrainingError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu.")
            if dev.index is None:
                dev = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
            torch.cuda.set_device(dev)
        if world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                                 **({"device_id": dev} if dev.type == "cuda" else {}))
        return cls(rank, local_rank, world_size, dev)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_mean(self, value: float) -> float:
        """Mean of a number over the ranks (for logging)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world_size

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
