"""Training checkpoints in the published layout: `model_state` + `optimizer_state`
(+ `step` for the encoder), plus a `hparams` entry of plain values only when the model
differs from the published sizes; and the run folder's recorded settings."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from deepfake_audio.training import TrainingError
from deepfake_audio.training.distributed import unwrap
from deepfake_audio.training.files import atomic_write


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    hparams: Mapping | None = None, step: int | None = None, backup_every: int = 0,
                    current_step: int = 0, extra: Mapping | None = None) -> None:
    """Write `model_state` + `optimizer_state` (+ `step`) as the published checkpoints have them.

    `hparams` (model-changing overrides, plain values) is added only when non-empty, so a
    full-size model's checkpoint has exactly the published keys.
    """
    ckpt: dict = {}
    if step is not None:
        ckpt["step"] = int(step)
    ckpt["model_state"] = unwrap(model).state_dict()
    ckpt["optimizer_state"] = optimizer.state_dict()
    if hparams:
        ckpt["hparams"] = dict(hparams)
    ckpt.update(extra or {})  # e.g. "architecture" of a non-Tacotron synthesizer
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
    if backup_every and current_step and current_step % backup_every == 0:
        atomic_write(path.with_name(f"{path.stem}_{current_step}{path.suffix}"), lambda tmp: torch.save(ckpt, tmp))


def load_training_checkpoint(path: Path) -> dict:
    """Read a checkpoint with the engine's safe loader (plain data only)."""
    from deepfake_audio_core.checkpoint import read_checkpoint
    return read_checkpoint(path)


def load_model_state(model: torch.nn.Module, ckpt: Mapping, path: Path, kind: str) -> None:
    from deepfake_audio_core.checkpoint import check_state_dict, model_state_of
    state = model_state_of(ckpt, path)
    check_state_dict(model, state, path, kind)
    model.load_state_dict(state, strict=True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, ckpt: Mapping, path: Path) -> None:
    state = ckpt.get("optimizer_state")
    if state is None:
        raise TrainingError(f"{path} has no optimizer_state, so training cannot resume from it exactly; "
                            "start a new run from its weights with --init instead.")
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError) as exc:
        raise TrainingError(f"The optimizer state in {path} does not fit this model ({exc}).") from None


def checkpoint_hparams(ckpt: Mapping) -> dict:
    value = ckpt.get("hparams") or {}
    return dict(value) if isinstance(value, Mapping) else {}


def previous_settings(run: Path, names: Iterable[str]) -> dict:
    """Hyperparameters `names` as the run folder's hparams.json recorded them (for resuming)."""
    path = run / "hparams.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("hparams", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: recorded[k] for k in names if k in recorded}


def record_run(args, dist, hparams: Mapping, **extra) -> None:
    """hparams.json of the run (rank 0 only): the command's options, the hyperparameters in force,
    the number of processes and anything in `extra`."""
    if dist.is_main:
        write_run_settings(args.run_dir, {**vars(args), "hparams": dict(hparams), "world_size": dist.world_size,
                                          **extra})


def write_run_settings(run: Path, settings: Mapping) -> None:
    """hparams.json in the run folder: how this run was made."""
    def plain(v):
        return str(v) if isinstance(v, Path) else v
    atomic_write(run / "hparams.json", lambda tmp: tmp.write_text(
        json.dumps({k: plain(v) for k, v in settings.items()}, indent=2, default=str) + "\n", encoding="utf-8"))


def open_run(run: Path, ckpt_name: str, init: Path | None) -> tuple[Path, dict | None, dict | None]:
    """(checkpoint path, checkpoint to resume or None, checkpoint to start from or None)."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / ckpt_name
    if path.is_file():
        return path, load_training_checkpoint(path), None
    if init is not None:
        return path, None, load_training_checkpoint(init)
    return path, None, None


def restore(run, args, model: torch.nn.Module, optimizer: torch.optim.Optimizer, kind: str) -> None:
    """Load a `commands.RunStart`'s weights: the run's own checkpoint with its optimizer state
    (to continue exactly), else the --init checkpoint's weights alone."""
    if run.resume is not None:
        load_model_state(model, run.resume, run.checkpoint, kind)
        load_optimizer_state(optimizer, run.resume, run.checkpoint)
    elif run.init is not None:
        load_model_state(model, run.init, args.init, kind)
