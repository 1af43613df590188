"""Deterministic test checkpoints, made with the reference weight formula.

The formula (documented with the reference test vectors) needs no RNG: for tensor
`key` with n elements, seed s and flat index i,

    h = crc32(key);  D = (2654435761*s + h) mod 2^31;  j = i + D
    x = (1103515245*((j*j) mod 2^32) + 40503*j + h) mod 2^32
    f = 2*x/2^32 - 1                                  (float64, in [-1, 1))

and each tensor is `f` scaled by a per-kind rule (see `_tensor`). Seed 1 with step
1000 and r = 2 gives the checkpoints the vectors in `tests/data` were made with.
"""
from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parent / "data"
_M = 2**32
_A, _B, _C = 1103515245, 40503, 2654435761


def schema(model: str) -> dict:
    """The reference state-dict schema of `model` ("encoder", "synthesizer" or "vocoder")."""
    return json.loads((DATA / f"schema_{model}.json").read_text())


def unit_noise(key: str, n: int, seed: int) -> np.ndarray:
    """(n,) float64 in [-1, 1): the formula's noise for one tensor."""
    h = zlib.crc32(key.encode("utf-8"))
    offset = (_C * seed + h) % 2**31
    j = np.arange(n, dtype=np.uint64) + np.uint64(offset)
    # uint64 arithmetic wraps mod 2^64, and 2^32 divides 2^64, so every "mod 2^32" stays exact.
    q = (j * j) % np.uint64(_M)
    x = (np.uint64(_A) * q + np.uint64(_B) * j + np.uint64(h)) % np.uint64(_M)
    return x.astype(np.float64) * (2.0 / _M) - 1.0


def _tensor(key: str, shape: list[int], dtype: str, seed: int, step: int, r: int) -> torch.Tensor:
    tdtype = getattr(torch, dtype)
    last = key.rsplit(".", 1)[-1]
    constants = {"step": step, "decoder.r": r, "stop_threshold": -3.4,
                 "similarity_weight": 10.0, "similarity_bias": -5.0}
    if last == "num_batches_tracked":
        return torch.zeros(shape, dtype=tdtype)
    if key in constants:
        return torch.full(shape, constants[key], dtype=tdtype)
    f = unit_noise(key, math.prod(shape), seed).reshape(shape)
    if ".bnorm." in key or ".batch_norm" in key:
        value = {"weight": 1.0 + 0.1 * f, "bias": 0.05 * f, "running_mean": 0.05 * f,
                 "running_var": 1.0 + 0.1 * (f + 1.0)}[last]
    elif ".up_layers." in key:
        value = (1.0 / shape[-1]) * (1.0 + 0.1 * f)
    elif len(shape) >= 2:
        scale = 0.3 if key == "encoder.embedding.weight" else 1.0 / math.sqrt(math.prod(shape[1:]))
        value = (scale * math.sqrt(3.0)) * f
    else:
        value = 0.05 * f
    return torch.from_numpy(value).to(tdtype)


def make_state(model: str, seed: int = 1, step: int = 1000, r: int = 2) -> "OrderedDict[str, torch.Tensor]":
    """The formula's state dict for `model`, in schema order."""
    return OrderedDict((t["key"], _tensor(t["key"], t["shape"], t["dtype"], seed, step, r))
                       for t in schema(model)["tensors"])


def make_checkpoint(model: str, seed: int = 1, step: int = 1000, r: int = 2,
                    with_optimizer: bool = False) -> dict:
    """A checkpoint dict laid out as the reference training code saves it."""
    state = make_state(model, seed, step, r)
    ckpt: dict = {"step": step, "model_state": state} if model == "encoder" else {"model_state": state}
    if with_optimizer:
        n_params = sum(1 for t in schema(model)["tensors"] if t["kind"] == "param")
        ckpt["optimizer_state"] = {"state": {}, "param_groups": [{
            "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
            "params": list(range(n_params))}]}
    return ckpt


def content_hash(state: dict) -> str:
    """sha256 over each entry's key bytes then its raw little-endian tensor bytes, in order."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode("utf-8"))
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def write_checkpoints(folder: Path, seed: int = 1, **kwargs) -> dict[str, Path]:
    """Write encoder.pt, synthesizer.pt and vocoder.pt for `seed` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for model in ("encoder", "synthesizer", "vocoder"):
        paths[model] = folder / f"{model}.pt"
        torch.save(make_checkpoint(model, seed, **kwargs), paths[model])
    return paths


def write_quick_checkpoints(folder: Path, seed: int = 1) -> dict[str, Path]:
    """Seed checkpoints whose synthesizer emits its stop token at once.

    With formula weights the stop probability stays near 0.5, so every sentence runs to
    the 2000-frame cap; a large stop bias makes generation end at the earliest allowed
    step (14 frames), which keeps end-to-end tests quick without changing any code path.
    """
    paths = write_checkpoints(folder, seed)
    ckpt = make_checkpoint("synthesizer", seed)
    ckpt["model_state"]["decoder.stop_proj.bias"].fill_(30.0)
    torch.save(ckpt, paths["synthesizer"])
    return paths
