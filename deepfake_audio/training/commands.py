"""Command-line plumbing the preprocessing and training commands share."""
from __future__ import annotations

import argparse
import ast
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake_audio_core.console import run_command
from deepfake_audio_core.hparams import field_values, with_overrides
from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import checkpoint_hparams, open_run, previous_settings
from deepfake_audio.training.distributed import Distributed


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a console entry, turning user-facing errors into one line and exit status 2."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)

    def action() -> int:
        main(argv)  # returns what it made (records, a TrainSummary), not an exit status
        return 0
    return run_command(action, debug=debug)


def console_entry(main: Callable[[list[str] | None], object]) -> Callable[[list[str] | None], int]:
    """The console-script function of a command's `main`: `cli(argv) -> exit status`."""
    return functools.partial(run_cli, main)


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
    parser.add_argument("--train-only", nargs="+", default=None, metavar="PREFIX",
                        help="train only the parameters whose names start with one of these prefixes; the "
                             "others stay as they are (what a voice's fine-tuning does: synthesizer.tuning)")
    parser.add_argument("--progress-file", type=Path, default=None, metavar="JSON",
                        help="also keep the step and the losses so far in this JSON file as training goes "
                             "(for a job runner to show; continued across resumes)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def train_parser(prog: str, description: str, data_help: str, save_every: int, sample_every: int,
                 epilog: str) -> argparse.ArgumentParser:
    """A train command's parser: its data argument and every common training option."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("data", type=Path, help=data_help)
    add_common_train_options(parser, save_every=save_every, sample_every=sample_every)
    return parser


def hparams_epilog(hparams: Mapping[str, object]) -> str:
    return "Hyperparameters for --hparams: " + ", ".join(f"{k}={v!r}" for k, v in hparams.items())


def corpus_parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """A preprocessing command's parser: the corpus folders and every common preprocessing option."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=f"Example: {example}")
    parser.add_argument("corpora", nargs="+", metavar="CORPUS", help=CORPUS_HELP)
    add_common_preprocess_options(parser)
    return parser


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


# The train commands


@dataclass
class RunStart:
    """Where a training run starts: its checkpoint path, what it resumes or starts from, and
    its hyperparameters (defaults < the checkpoint's < the run's recorded settings < --hparams)."""

    checkpoint: Path
    resume: dict | None  # the run folder's own checkpoint, to continue exactly
    init: dict | None  # --init weights, for a new run
    hp: Any

    @property
    def source(self) -> dict:
        return self.resume or self.init or {}


def start_run(args: argparse.Namespace, defaults: Any, checkpoint_name: str,
              training_fields: Iterable[str]) -> RunStart:
    """Open `args.run_dir` and merge the hyperparameters the same way for every stage.

    `defaults` is the stage's frozen hyperparameter dataclass; a resumed run keeps the
    training settings (`training_fields`) it recorded unless --hparams changes them.
    """
    overrides = parse_overrides(args.hparams, field_values(defaults))
    checkpoint, resume, init = open_run(args.run_dir, checkpoint_name, args.init)
    hp = with_overrides(defaults, checkpoint_hparams(resume or init or {}))
    if resume is not None:
        hp = with_overrides(hp, previous_settings(args.run_dir, training_fields))
    return RunStart(checkpoint, resume, init, with_overrides(hp, overrides))


@dataclass(frozen=True)
class TrainCommand:
    """A stage's train command: parse, join the (possibly one-process) job, train, leave the job."""

    build_parser: Callable[[], argparse.ArgumentParser]
    train: Callable[[argparse.Namespace, Distributed], object]

    def main(self, argv: list[str] | None = None):
        args = self.build_parser().parse_args(argv)
        dist = Distributed.setup(args.device)
        try:
            return self.train(args, dist)
        finally:
            dist.close()

    def cli(self, argv: list[str] | None = None) -> int:
        return run_cli(self.main, argv)

    def entry_points(self) -> tuple[Callable, Callable]:
        """(main, cli): `main(argv)` returns the `TrainSummary`; `cli(argv)` the exit status."""
        return self.main, self.cli
