"""What the three training pipelines share.

* Resumable, parallel preprocessing (`process_utterances`): outputs are written
  atomically, one file per utterance, and a journal remembers what is done.
* Checkpoints in the published layout (`save_checkpoint`, `load_training_checkpoint`):
  `model_state` + `optimizer_state` (+ `step` for the encoder), plus a `hparams` entry
  of plain values only when the model differs from the published sizes.
* Scale-out (`Distributed`): the training commands read the variables `torchrun` sets,
  join the process group (NCCL on GPUs, gloo on CPU) and wrap the model in
  DistributedDataParallel. Only rank 0 writes checkpoints, logs and samples.
* Sampling (`SampleStream`, `StepBatchSampler`): which items form the batch of a step is
  a pure function of (seed, step, rank), so a resumed run sees exactly the batches an
  uninterrupted one would have, and each rank gets its own share of every epoch.
* Logging (`RunLogger`): TensorBoard scalars, figures and audio, on rank 0 only.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepfake_audio.datasets import Corpus, Utterance
from deepfake_audio.errors import DeepfakeAudioError

METADATA = "metadata.jsonl"
JOURNAL = "journal.jsonl"
SKIPPED = "skipped.txt"


class TrainingError(DeepfakeAudioError):
    """A training or preprocessing run cannot go on: bad options, data or checkpoint."""


# Command line


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a console entry, turning user-facing errors into one line and exit status 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        main(argv)
        return 0
    except DeepfakeAudioError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def parse_overrides(pairs: Iterable[str] | None, allowed: Mapping[str, object]) -> dict:
    """`["name=value", ...]` -> {name: value}; each value is a Python literal of the default's type."""
    overrides = {}
    for pair in pairs or ():
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or name not in allowed:
            raise TrainingError(f"Unknown hyperparameter {name!r} in --hparams; known ones: "
                                f"{', '.join(sorted(allowed))}.")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        default = allowed[name]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise TrainingError(f"--hparams {name} must be True or False, not {text!r}.")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        if default is not None and not isinstance(value, type(default)):
            raise TrainingError(f"--hparams {name} must be a {type(default).__name__} like {default!r}, "
                                f"not {text!r}.")
        overrides[name] = value
    return overrides


def add_common_train_options(parser: argparse.ArgumentParser, save_every: int, sample_every: int) -> None:
    """Options every training command has, with their help."""
    # Not "--run": torchrun would take it for an abbreviation of its own --run-path.
    parser.add_argument("--run-dir", type=Path, required=True, metavar="DIR",
                        help="run folder: the checkpoint, TensorBoard logs (logs/), samples (samples/) and "
                             "the run's settings (hparams.json) go here; a checkpoint already there is resumed")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="stop when the step counter reaches N (it continues across resumes; default: "
                             "the end of tts_schedule for the synthesizer, otherwise run until Ctrl+C)")
    parser.add_argument("--init", type=Path, default=None, metavar="CKPT",
                        help="start a new run from the weights of this checkpoint (a published or trained "
                             "one) instead of random weights; its step counter and optimizer are not "
                             "taken over. Ignored when the run folder already has a checkpoint")
    parser.add_argument("--hparams", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                        help="override hyperparameters, e.g. for a small model; values are Python "
                             "literals. A checkpoint remembers the overrides that change the model")
    parser.add_argument("--save-every", type=int, default=save_every, metavar="N",
                        help=f"write the checkpoint every N steps (default {save_every}); it is also "
                             "written at the end and on Ctrl+C")
    parser.add_argument("--backup-every", type=int, default=0, metavar="N",
                        help="also keep a copy of the checkpoint every N steps as <name>_<step>.pt "
                             "(default 0: no copies)")
    parser.add_argument("--sample-every", type=int, default=sample_every, metavar="N",
                        help=f"log plots and an audio sample to TensorBoard every N steps (default "
                             f"{sample_every}; 0 turns them off)")
    parser.add_argument("--log-every", type=int, default=10, metavar="N",
                        help="log scalars to TensorBoard and the console every N steps (default 10)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="data-loading processes per training process (default 2; 0 loads in the "
                             "training process)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available). Under torchrun each "
                             "process takes the GPU of its LOCAL_RANK")
    parser.add_argument("--seed", type=int, default=1234,
                        help="seed of the weight initialisation, the batch order and the dropout masks "
                             "(default 1234)")
    parser.add_argument("--overfit-batch", action="store_true",
                        help="debugging aid: train on one fixed batch over and over; the loss should fall "
                             "towards zero if the model and data are sound")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop cleanly (checkpoint written) once this much wall-clock time has passed: "
                             "for time-boxed or preemptible machines; resume later with the same command")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def add_common_preprocess_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder; running the command again resumes where it stopped and "
                             "only processes what is missing")
    parser.add_argument("--format", default="auto", choices=("auto", "librispeech", "libritts", "vctk",
                                                             "ljspeech", "voxceleb", "generic"),
                        help="layout of the corpus folders (default: auto-detect); a single folder can "
                             "also be given as FORMAT:PATH")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help=f"parallel processes (default: all {os.cpu_count()} CPU cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


CORPUS_HELP = ("corpus folders, each PATH or FORMAT:PATH (FORMAT one of librispeech, libritts, vctk, "
               "ljspeech, voxceleb, generic). Generic is <speaker>/<utterance>.wav with <utterance>.txt")


# Files


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array)
    atomic_write(path, write)


def write_jsonl(path: Path, records: Iterable[Mapping]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                          for r in records), encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return records


def read_metadata(folder: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """The records of a preprocessed folder, with file entries resolved to absolute paths."""
    folder = Path(folder)
    path = folder / METADATA
    if not path.is_file():
        raise TrainingError(f"{folder} has no {METADATA}: run the preprocessing command for it first.")
    records = read_jsonl(path)
    if not records:
        raise TrainingError(f"{path} lists no utterances: the preprocessing kept nothing (see {SKIPPED}).")
    for record in records:
        for key in required:
            if key not in record:
                raise TrainingError(f"{path} has no '{key}' entries: it was made by another preprocessing step.")
        for key in ("frames", "mel", "audio", "embed"):
            if key in record:
                record[key] = str((folder / record[key]).resolve())
    return records


def relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()


# Resumable parallel preprocessing


@dataclass
class Outcome:
    """Result of processing one item: a metadata record, or the reason it was skipped."""

    id: str
    record: dict | None = None
    skipped: str | None = None  # reason
    source: str = ""


def _pool_context():
    # fork starts workers instantly; where it does not exist (Windows, macOS default) spawn works too.
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def parallel_map(fn: Callable, items: list, workers: int, desc: str, quiet: bool = False,
                 initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """Apply `fn` to `items` over `workers` processes, in any order, with a tqdm bar."""
    from tqdm import tqdm
    bar = tqdm(total=len(items), desc=desc, unit="utt", disable=quiet or not items, dynamic_ncols=True)
    try:
        if workers <= 1 or len(items) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for item in items:
                yield fn(item)
                bar.update()
            return
        chunk = max(1, min(16, len(items) // (workers * 8)))
        with _pool_context().Pool(workers, initializer, initargs) as pool:
            for result in pool.imap_unordered(fn, items, chunksize=chunk):
                yield result
                bar.update()
    finally:
        bar.close()


def _worker_threads() -> None:
    torch.set_num_threads(1)


def process_utterances(corpus: Corpus, out: Path, fn: Callable[[Utterance], Outcome], workers: int,
                       desc: str, quiet: bool = False, outputs_exist: Callable[[dict], bool] | None = None,
                       initializer: Callable | None = None, initargs: tuple = ()) -> list[dict]:
    """Run `fn` on every utterance not done yet; write metadata.jsonl and skipped.txt; return the records.

    A journal in `out` records each outcome as soon as it arrives, so an interrupted run
    continues where it stopped. Utterances that failed before are tried again.
    """
    out.mkdir(parents=True, exist_ok=True)
    journal_path = out / JOURNAL
    done: dict[str, dict] = {}
    for entry in read_jsonl(journal_path):
        record = entry.get("record")
        if record is not None and (outputs_exist is None or outputs_exist(record)):
            done[entry["id"]] = record
    todo = [u for u in corpus.utterances if u.id not in done]
    if done and not quiet:
        print(f"resuming: {len(corpus.utterances) - len(todo)} of {len(corpus.utterances)} utterances already done")
    skipped = list(corpus.skipped)

    def init(*args):
        _worker_threads()
        if initializer is not None:
            initializer(*args)

    with journal_path.open("a", encoding="utf-8") as journal:
        for outcome in parallel_map(fn, todo, workers, desc, quiet, init, initargs):
            journal.write(json.dumps({"id": outcome.id, "record": outcome.record, "skipped": outcome.skipped},
                                     ensure_ascii=False) + "\n")
            journal.flush()
            if outcome.record is not None:
                done[outcome.id] = outcome.record
            else:
                skipped.append((outcome.source, outcome.skipped or "unknown error"))
    records = [done[u.id] for u in corpus.utterances if u.id in done]
    write_jsonl(out / METADATA, records)
    atomic_write(out / SKIPPED, lambda tmp: tmp.write_text("".join(f"{f}\t{why}\n" for f, why in skipped),
                                                           encoding="utf-8"))
    report_skipped(skipped, out, quiet)
    return records


def report_skipped(skipped: list[tuple[str, str]], out: Path, quiet: bool = False) -> None:
    if skipped and not quiet:
        print(f"skipped {len(skipped)} file(s) (listed in {out / SKIPPED}):", file=sys.stderr)
        for path, why in skipped[:10]:
            print(f"  {path}: {why}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)


# Distributed training


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


# Checkpoints


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
    from deepfake_audio.checkpoint import read_checkpoint
    return read_checkpoint(path)


def load_model_state(model: torch.nn.Module, ckpt: Mapping, path: Path, kind: str) -> None:
    from deepfake_audio.checkpoint import check_state_dict, model_state_of
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


def write_run_settings(run: Path, settings: Mapping) -> None:
    """hparams.json in the run folder: how this run was made."""
    def plain(v):
        return str(v) if isinstance(v, Path) else v
    atomic_write(run / "hparams.json", lambda tmp: tmp.write_text(
        json.dumps({k: plain(v) for k, v in settings.items()}, indent=2, default=str) + "\n", encoding="utf-8"))


# Logging


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
            from deepfake_audio.audio_io import write_wav
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


def finite(value: torch.Tensor | float) -> bool:
    return math.isfinite(float(value))


# The loop


def open_run(run: Path, ckpt_name: str, init: Path | None) -> tuple[Path, dict | None, dict | None]:
    """(checkpoint path, checkpoint to resume or None, checkpoint to start from or None)."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / ckpt_name
    if path.is_file():
        return path, load_training_checkpoint(path), None
    if init is not None:
        return path, None, load_training_checkpoint(init)
    return path, None, None


def fit(batches: Iterable, train_step: Callable[[object, int], dict], save: Callable[[int], None],
        sample: Callable[[object, int], None] | None, start_step: int, args, logger: RunLogger,
        dist: Distributed, stage: str) -> list[float]:
    """Run `train_step(batch, step)` over `batches`; log, sample and save on schedule.

    `train_step` returns floats to log, including "loss". Rank 0 saves every
    `args.save_every` steps, at the end and on Ctrl+C. Returns this rank's losses.
    """
    step = start_step
    losses: list[float] = []
    deadline = None if getattr(args, "time_limit", None) is None else time.monotonic() + args.time_limit
    try:
        for batch in batches:
            if deadline is not None and _out_of_time(deadline, dist):
                if dist.is_main:
                    print(f"\ntime limit reached at step {step}", file=sys.stderr)
                break
            values = train_step(batch, step)
            step += 1
            losses.append(float(values["loss"]))
            logger.advance()
            if step % args.log_every == 0 or step == start_step + 1:
                logger.scalars(step, {f"{stage}/{k}": dist.all_mean(float(v)) for k, v in values.items()})
            if sample is not None and args.sample_every and step % args.sample_every == 0 and dist.is_main:
                sample(batch, step)
            if args.save_every and step % args.save_every == 0 and dist.is_main:
                save(step)
    except KeyboardInterrupt:
        if dist.is_main:
            save(step)
            print(f"\ninterrupted: checkpoint saved at step {step}", file=sys.stderr)
        raise
    if dist.is_main and step > start_step:
        save(step)
    return losses


def _out_of_time(deadline: float, dist: Distributed) -> bool:
    # Every rank must stop at the same step, so the ranks agree on the latest clock.
    return dist.all_mean(float(time.monotonic() >= deadline)) > 0


@dataclass
class TrainSummary:
    """What a training command did (returned by the stages' `main`)."""

    checkpoint: Path
    start_step: int
    step: int
    losses: list[float]  # this process's loss at each step it ran
    model: torch.nn.Module | None = None  # the trained model (unwrapped)
