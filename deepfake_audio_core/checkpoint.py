"""Safe, strict loading of SV2TTS checkpoints.

Checkpoints are always read with `torch.load(weights_only=True)`, so a file can only
hold tensors and plain containers and can never run code. Both the legacy (pre-1.6)
and the zip serialisation load this way. The state dict is then checked name by name
and shape by shape against the model before it is copied in, and the first mismatch
is reported with the file it came from.
"""
from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from deepfake_audio_core.errors import MissingWeightsError, WeightsError

_LFS_MAGIC = b"version https://git-lfs"


# path -> the message for a checkpoint that is not on disk (the layers above say how to fetch it).
MissingMessage = Callable[[Path], str]


def missing_file_message(path: Path) -> str:
    """The plain message for a missing checkpoint, when the caller has no better one."""
    return f"Checkpoint {Path(path).absolute()} is missing: put the weights file at that path."


def read_checkpoint(path: Path | str, missing_message: MissingMessage | None = None) -> dict:
    """Load a checkpoint file as a dict, refusing anything that is not plain data.

    Raises `MissingWeightsError` (with `missing_message(path)`, which can say how to fetch
    the file) when it does not exist, and `WeightsError` when it is a Git LFS pointer,
    truncated, not a checkpoint or would need code to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError((missing_message or missing_file_message)(path))
    with path.open("rb") as fh:
        head = fh.read(len(_LFS_MAGIC))
    if head == _LFS_MAGIC:
        raise WeightsError(f"{path} is a Git LFS pointer, not the weights: run `git lfs pull` "
                           "or download the file again.")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty: download it again.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise WeightsError(f"{path} holds objects other than tensors and plain data; it is "
                               "refused because loading it could run code.") from None
        raise WeightsError(f"{path} is truncated or not a PyTorch checkpoint ({_first_line(exc)}).") from None
    except Exception as exc:  # torch raises many types for damaged files (EOFError, RuntimeError, IndexError...)
        raise WeightsError(f"{path} is truncated or not a PyTorch checkpoint ({_first_line(exc)}).") from None
    if not isinstance(ckpt, Mapping):
        raise WeightsError(f"{path} is not an SV2TTS checkpoint (it holds a {type(ckpt).__name__}).")
    return dict(ckpt)


def model_state_of(ckpt: Mapping, path: Path | str) -> Mapping[str, torch.Tensor]:
    """The model's state dict inside a checkpoint: its `model_state`, or the dict itself when bare."""
    state = ckpt.get("model_state", ckpt)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} has no model_state with tensors; it is not an SV2TTS checkpoint.")
    return state


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path | str,
                     kind: str) -> None:
    """Raise `WeightsError` naming the first missing, unexpected or wrongly shaped tensor."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise WeightsError(f"{path} does not match the {kind} model: tensor '{name}' is missing "
                               f"(is this a {kind} checkpoint?).")
        got = tuple(state[name].shape)
        if got != tuple(tensor.shape):
            raise WeightsError(f"{path} does not match the {kind} model: '{name}' has shape {list(got)}, "
                               f"expected {list(tensor.shape)}.")
    for name in state:
        if name not in expected:
            raise WeightsError(f"{path} does not match the {kind} model: unexpected tensor '{name}' "
                               f"(is this a {kind} checkpoint?).")


def load_model(path: Path | str, build: Callable[[dict], torch.nn.Module], kind: str,
               missing_message: MissingMessage | None = None) -> tuple[torch.nn.Module, dict]:
    """Read `path`, build the model its checkpoint describes (`build(ckpt)`: e.g. sized by its
    "hparams"), check the weights strictly against it and copy them in (fp16 weights become the
    model's fp32). Returns (model, checkpoint)."""
    ckpt = read_checkpoint(path, missing_message)
    model = build(ckpt)
    state = model_state_of(ckpt, path)
    check_state_dict(model, state, path, kind)
    model.load_state_dict(state, strict=True)
    return model, ckpt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def frozen_fingerprint(model: torch.nn.Module, salt: str, tuned: Callable[[str], bool]) -> str:
    """Hex digest (32 characters) of the weights of `model` that a voice's tuning leaves frozen: every
    state entry whose name `tuned` refuses. A tuned share fits a base with the same digest.

    Computed on the weights as loaded (fp32), rounded to fp16 so that a base exported in fp16
    and the same base in fp32 agree."""
    import hashlib
    digest = hashlib.sha256(salt.encode())
    for name, value in sorted(model.state_dict().items()):
        if tuned(name):
            continue
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float16).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]
