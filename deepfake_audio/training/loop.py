"""The fit loop every training command runs: log, sample and save on schedule, stop on
a time limit, Ctrl+C or SIGTERM (`kill`, a container stopping) with the checkpoint written."""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfake_audio.training.distributed import Distributed
from deepfake_audio.training.files import atomic_write
from deepfake_audio.training.run_logger import RunLogger


# A step count that means "until the time limit": a voice tuning trains for minutes, not steps,
# and its progress bar then counts steps without a total (and without a made-up time left).
OPEN_ENDED = 10 ** 9


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a training command: it stopped as on Ctrl+C, with the checkpoint saved."""


class _TerminationFlag:
    """Within `with`, SIGTERM sets `.raised` instead of killing the process (Python's default: dead,
    unsaved), so the loop stops between steps, never inside an optimiser step. A run started in the
    background with `&` ignores Ctrl+C, so `kill` is how it gets stopped."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self) -> "_TerminationFlag":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            try:
                self._previous = signal.signal(signal.SIGTERM, self._note)
            except (ValueError, OSError):
                self._previous = None
        return self

    def _note(self, signum, frame) -> None:
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def finite(value: torch.Tensor | float) -> bool:
    return math.isfinite(float(value))


def warmup_cosine(peak: float, warmup_steps: int, total_steps: int, step: int) -> float:
    """Learning rate at `step`: linear warm-up to `peak`, then cosine decay to a tenth of it at `total_steps`."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimise(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float,
             step: int) -> float:
    """One update: backward, clip the gradient norm, step (skipped when the norm is not finite), and
    the model's step counter set to `step + 1`. Returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if finite(grad_norm):
        optimizer.step()
    model.step.fill_(step + 1)
    return float(grad_norm)


def freeze_except(model: torch.nn.Module, prefixes: list[str] | None) -> int:
    """Leave only the parameters whose names start with one of `prefixes` trainable (all when None).
    Returns how many values train. A frozen parameter gets no gradient, so the optimizer skips it."""
    if not prefixes:
        return sum(p.numel() for p in model.parameters())
    trained = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(tuple(prefixes)))
        trained += parameter.numel() if parameter.requires_grad else 0
    if not trained:
        from deepfake_audio.training import TrainingError
        raise TrainingError(f"--train-only {' '.join(prefixes)} matches none of the model's parameters.")
    return trained


class ProgressFile:
    """The step and losses of a run as JSON (`--progress-file`), for a job runner to show while it trains.

    {"step": int, "end_step": int | None, "losses": [[step, loss], ...] (at most `KEEP`, thinned
    evenly), "updated": unix time}. Losses of earlier pieces of a resumed run are kept."""

    KEEP = 400

    def __init__(self, path: Path, end_step: int | None):
        self.path, self.end_step = Path(path), end_step
        try:
            self.losses = [list(p) for p in json.loads(self.path.read_text(encoding="utf-8"))["losses"]]
        except (OSError, ValueError, KeyError, TypeError):
            self.losses = []

    def write(self, step: int, loss: float) -> None:
        self.losses = [p for p in self.losses if p[0] < step] + [[step, round(loss, 5)]]
        if len(self.losses) > self.KEEP:  # every other point of the older half
            half = len(self.losses) // 2
            self.losses = self.losses[:half:2] + self.losses[half:]
        data = {"step": step, "end_step": self.end_step, "losses": self.losses, "updated": time.time()}
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(data)))


def fit(batches: Iterable, train_step: Callable[[object, int], dict], save: Callable[[int], None],
        sample: Callable[[object, int], None] | None, start_step: int, args, logger: RunLogger,
        dist: Distributed, stage: str) -> list[float]:
    """Run `train_step(batch, step)` over `batches`; log, sample and save on schedule.

    `train_step` returns floats to log, including "loss". Rank 0 saves every
    `args.save_every` steps, at the end and on Ctrl+C or SIGTERM. Returns this rank's losses.
    """
    step = start_step
    losses: list[float] = []
    progress_file = getattr(args, "progress_file", None)
    progress = ProgressFile(progress_file, getattr(args, "steps", None)) if progress_file and dist.is_main else None
    deadline = None if getattr(args, "time_limit", None) is None else time.monotonic() + args.time_limit
    try:
        with _TerminationFlag() as terminated:
            for batch in batches:
                if _agreed(terminated.raised, dist):
                    raise Terminated()
                if deadline is not None and _agreed(time.monotonic() >= deadline, dist):
                    if dist.is_main and not getattr(args, "quiet", False):
                        print(f"\ntime limit reached at step {step}", file=sys.stderr)
                    break
                values = train_step(batch, step)
                step += 1
                losses.append(float(values["loss"]))
                logger.advance()
                if step % args.log_every == 0 or step == start_step + 1:
                    logger.scalars(step, {f"{stage}/{k}": dist.all_mean(float(v)) for k, v in values.items()})
                    if progress is not None:
                        progress.write(step, float(values["loss"]))
                if sample is not None and args.sample_every and step % args.sample_every == 0 and dist.is_main:
                    sample(batch, step)
                if args.save_every and step % args.save_every == 0 and dist.is_main:
                    save(step)
    except KeyboardInterrupt as stop:
        if dist.is_main:
            save(step)
            how = "terminated" if isinstance(stop, Terminated) else "interrupted"
            print(f"\n{how}: checkpoint saved at step {step}", file=sys.stderr)
        raise
    if dist.is_main and step > start_step:
        save(step)
    return losses


def _agreed(stop: bool, dist: Distributed) -> bool:
    """Whether any rank says stop: every rank must stop at the same step (the latest clock, one SIGTERM)."""
    return dist.all_mean(float(stop)) > 0


@dataclass
class TrainSummary:
    """What a training command did (returned by the stages' `main`)."""

    checkpoint: Path
    start_step: int
    step: int
    losses: list[float]  # this process's loss at each step it ran
    model: torch.nn.Module | None = None  # the trained model (unwrapped)


def batch_loader(dataset, sampler, collate, args, dist: Distributed) -> torch.utils.data.DataLoader:
    """The DataLoader of a training command: the sampler's batches, `--workers` loading processes."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.workers,
                                       pin_memory=dist.device.type == "cuda")


def run_loop(batches: Iterable, train_step: Callable[[object, int], dict], save: Callable[[int], None],
             sample: Callable[[object, int, RunLogger], None] | None, start_step: int, end_step: int | None,
             args, dist: Distributed, stage: str, model: torch.nn.Module, checkpoint: Path) -> TrainSummary:
    """`fit` with the run's TensorBoard logger open; `sample(batch, step, logger)` draws the samples.

    Each checkpoint also updates `<run>/wall_time.json` ({"step", "seconds"}): the training
    time of the run so far, summed over every resumed piece (for model cards and budgets).
    """
    shown_total = None if end_step is not None and end_step >= OPEN_ENDED else end_step
    logger = RunLogger(args.run_dir, dist, start_step, shown_total, args.quiet)
    clock = _WallClock(Path(args.run_dir) / WALL_TIME)

    def save_and_time(step: int) -> None:
        save(step)
        clock.record(step)

    try:
        draw = None if sample is None else (lambda batch, step: sample(batch, step, logger))
        losses = fit(batches, train_step, save_and_time, draw, start_step, args, logger, dist, stage)
    finally:
        logger.close()
    return TrainSummary(checkpoint, start_step, start_step + len(losses), losses, model)


WALL_TIME = "wall_time.json"


class _WallClock:
    """Training seconds of a run across its pieces: what earlier pieces recorded plus this one's."""

    def __init__(self, path: Path):
        self.path = path
        self.start = time.monotonic()
        try:
            self.before = float(json.loads(path.read_text(encoding="utf-8"))["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            self.before = 0.0

    def record(self, step: int) -> None:
        seconds = self.before + time.monotonic() - self.start
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps({"step": step, "seconds": round(seconds, 1)})))
