"""TensorBoard scalars, figures and audio of a training run, on rank 0 only."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from deepfake_audio.training.distributed import Distributed


class RunLogger:
    """TensorBoard writer and console progress of rank 0; does nothing on other ranks."""

    def __init__(self, run: Path, dist: Distributed, start_step: int, total_steps: int | None,
                 quiet: bool = False):
        self.enabled = dist.is_main
        self.writer = None
        self.bar = None
        self.samples = run / "samples"
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter
            from tqdm import tqdm
            self.writer = SummaryWriter(log_dir=str(run / "logs"), purge_step=start_step)
            self.bar = tqdm(initial=start_step, total=total_steps, unit="step", disable=quiet, dynamic_ncols=True)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
            self.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def figure(self, step: int, tag: str, fig) -> None:
        if self.writer is not None:
            self.samples.mkdir(parents=True, exist_ok=True)
            fig.savefig(self.samples / f"{tag.replace('/', '_')}_{step}.png")
            self.writer.add_figure(tag, fig, step, close=True)

    def audio(self, step: int, tag: str, wav: np.ndarray, sample_rate: int) -> None:
        if self.writer is not None:
            from deepfake_audio_core.audio_io import write_wav
            wav = np.asarray(wav, dtype=np.float32)
            peak = float(np.max(np.abs(wav))) if wav.size else 0.0
            wav = wav / peak * 0.97 if peak > 0 else wav
            self.samples.mkdir(parents=True, exist_ok=True)
            write_wav(self.samples / f"{tag.replace('/', '_')}_{step}.wav", wav, sample_rate)
            self.writer.add_audio(tag, torch.from_numpy(wav)[None], step, sample_rate=sample_rate)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.bar.close()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_mels(mels: Mapping[str, np.ndarray], title: str = ""):
    """One panel per (80, frames) mel, top to bottom."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(mels), 1, figsize=(10, 2.6 * len(mels)), squeeze=False)
    for ax, (name, mel) in zip(axes[:, 0], mels.items()):
        im = ax.imshow(mel, aspect="auto", origin="lower", interpolation="none")
        ax.set_title(name)
        ax.set_ylabel("channel")
        fig.colorbar(im, ax=ax)
    axes[-1, 0].set_xlabel("frame")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_matrix(matrix: np.ndarray, title: str, xlabel: str, ylabel: str):
    """A heat map, e.g. attention (decoder steps x characters) or a similarity matrix."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    im = ax.imshow(matrix, aspect="auto", origin="lower", interpolation="none")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig
