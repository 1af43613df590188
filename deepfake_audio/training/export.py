"""Turn a training checkpoint into a small file for inference: weights only, optionally float16.

A training checkpoint carries Adam's two moment estimates, three times the weights'
size. The engine needs only `model_state` (+ `hparams` for a resized model, + `step`);
float16 storage halves that again, and the engine converts back to float32 on load.

    python -m deepfake_audio.training.export runs/synthesizer/synthesizer.pt saved_models/starter/synthesizer.pt --fp16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from deepfake_audio_core.checkpoint import model_state_of, read_checkpoint


def export_weights(checkpoint: Path, out: Path, fp16: bool = False) -> int:
    """Write the inference-only copy of `checkpoint` to `out`; returns its size in bytes."""
    ckpt = read_checkpoint(checkpoint)
    state = model_state_of(ckpt, checkpoint)
    if fp16:  # only floating weights; integer buffers (step, r) keep their type
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    small: dict = {"model_state": {k: v.contiguous().clone() for k, v in state.items()}}
    for key in ("step", "hparams", "architecture"):
        if key in ckpt:
            small[key] = ckpt[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    torch.save(small, tmp)
    tmp.replace(out)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepfake_audio.training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (model_state + optimizer_state)")
    parser.add_argument("out", type=Path, help="inference checkpoint to write")
    parser.add_argument("--fp16", action="store_true", help="store floating-point weights as float16")
    args = parser.parse_args(argv)
    size = export_weights(args.checkpoint, args.out, args.fp16)
    print(f"{args.out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    from deepfake_audio.training.commands import run_cli
    sys.exit(run_cli(main))
