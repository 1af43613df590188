"""Fine-tune the synthesizer (and optionally the vocoder) on a few minutes of one voice.

The voice folder is preprocessed (mels + embeddings), the synthesizer continues from a
published or trained checkpoint at a small constant learning rate and its own r, and,
with `--finetune-vocoder`, the vocoder continues on ground-truth-aligned mels made by
the fine-tuned synthesizer. The result is a models folder the engine and the studio
load as they are:

    sv2tts-finetune my_voice/ --out saved_models/my_voice
    python -m deepfake_audio clone --models saved_models/my_voice --voice my_voice/a.wav --text "Hello."

Running the same command again resumes an interrupted fine-tuning.

With `--tuned-voice FILE` only the share of the synthesizer that draws the mel from the
speaker is trained (`synthesizer.tuning`), within a time budget (`--minutes`), and the
result is one small tuned voice file (a few MB) that speaks with the models it was tuned
on, wherever a voice is asked for (`clone --voice me.tuned.pt`, the studio, the HTTP API):

    sv2tts-finetune my_voice/ --out work/me --tuned-voice me.tuned.pt --minutes 10

Where the starter vocoder speaks the clones, the last quarter of the budget (`--vocoder-share`)
tunes its last blocks to the takes too, where 20 takes or more leave some to judge it on; the
file keeps that share (about 2 MB) only where it brings six validation clones nearer the voice
by 0.01 or more (`vocoder.tuning`); the command's last line says which.

Takes in another language than English train only the parts that colour the voice
(`--takes-language other`; `auto`, the default, decides so when the transcripts are not English:
`training.takes_language`), so that the voice's English words stay clear.

The studio's "Train a voice" runs exactly this command (`training.voice_tuning`).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from deepfake_audio.training import TrainingError
from deepfake_audio.training.checkpoints import load_training_checkpoint
from deepfake_audio.training.commands import console_entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sv2tts-finetune",
        description="Adapt a synthesizer (and optionally the vocoder) to one speaker from a few minutes of "
                    "transcribed recordings. The output folder holds synthesizer.pt (and vocoder.pt, and "
                    "encoder.pt when --encoder is given) and can be passed to `clone --models`.",
        epilog="The voice folder is a flat folder of <name>.wav + <name>.txt pairs, or any corpus layout "
               "(FORMAT:PATH, e.g. ljspeech:my_voice). Intermediate data and TensorBoard logs go to "
               "<out>/data and <out>/runs.")
    parser.add_argument("voice", help="folder of the speaker's recordings with transcripts")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="models folder to write")
    parser.add_argument("--models", type=Path, default=None, metavar="DIR",
                        help="models folder of the synthesizer, vocoder and encoder in use (default: "
                             "saved_models/default or $DEEPFAKE_AUDIO_MODELS, the starter where it has none); "
                             "a tuned voice's samples are spoken with it")
    parser.add_argument("--synthesizer", type=Path, default=None, metavar="CKPT",
                        help="synthesizer to start from, a Tacotron or the FastSpeech starter (default: "
                             "synthesizer.pt of saved_models/default or $DEEPFAKE_AUDIO_MODELS)")
    parser.add_argument("--vocoder", type=Path, default=None, metavar="CKPT",
                        help="vocoder to use or start from (default: vocoder.pt of the same folder)")
    parser.add_argument("--encoder", type=Path, default=None, metavar="CKPT",
                        help="speaker encoder for the embeddings (default: the official encoder); must be "
                             "the one the synthesizer was trained with")
    parser.add_argument("--tuned-voice", type=Path, default=None, metavar="FILE",
                        help="write one small tuned voice file (NAME.tuned.pt) instead of a models folder: only "
                             "the speaker's share of the synthesizer trains, within --minutes; --out is then "
                             "the work folder (data, run, samples, progress.json)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="with --tuned-voice: the time budget of the whole job in minutes of wall time, "
                             "counted across restarts (default 10)")
    parser.add_argument("--name", default=None, help="with --tuned-voice: the voice's name (default: the file's)")
    parser.add_argument("--sample-text", default=None, metavar="TEXT",
                        help="with --tuned-voice: the sentence spoken with the voice every few minutes "
                             "(<out>/samples/)")
    parser.add_argument("--takes-language", choices=("auto", "english", "other"), default="auto",
                        help="with --tuned-voice: the language of the takes. other: only the parts of the "
                             "synthesizer that colour the voice train, so that its English words stay as clear "
                             "as before (takes in another language would teach the model their sounds for "
                             "English letters); english: the whole speaker's share trains; auto (default): "
                             "other when most letters of the transcripts are not English (A-Z) ones, or hardly "
                             "any of their words are English function words (the, of, you, ...)")
    parser.add_argument("--steps", type=int, default=None,
                        help="synthesizer fine-tuning steps (default 1000; with --tuned-voice: as many as "
                             "the budget allows)")
    parser.add_argument("--lr", type=float, default=None,
                        help="synthesizer learning rate (default 3e-5; with --tuned-voice 1e-4)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="utterances per step and process (default 8; with --tuned-voice 16)")
    parser.add_argument("--guided-attention", type=float, default=0.0, metavar="WEIGHT",
                        help="weight of the guided-attention loss (default 0: off)")
    parser.add_argument("--finetune-vocoder", action="store_true",
                        help="also fine-tune the vocoder on ground-truth-aligned mels of the fine-tuned "
                             "synthesizer")
    parser.add_argument("--vocoder-share", type=float, default=None, metavar="F",
                        help="with --tuned-voice: the share of --minutes that tunes the voice's own starter "
                             "vocoder, where the starter vocoder speaks its clones; kept only where it brings "
                             "them nearer the voice (default 0.25; 0: the synthesizer only)")
    parser.add_argument("--vocoder-steps", type=int, default=2000, help="vocoder fine-tuning steps (default 2000)")
    parser.add_argument("--vocoder-lr", type=float, default=5e-5, help="vocoder learning rate (default 5e-5)")
    parser.add_argument("--vocoder-batch-size", type=int, default=32, metavar="N",
                        help="vocoder windows per step and process (default 32)")
    parser.add_argument("--save-every", type=int, default=250, metavar="N", help="checkpoint every N steps")
    parser.add_argument("--sample-every", type=int, default=250, metavar="N",
                        help="TensorBoard plots and audio every N steps (0: off)")
    parser.add_argument("--workers", type=int, default=2, metavar="N",
                        help="processes for preprocessing and data loading (default 2)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of batch order and dropout (default 1234)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def _copy(src: Path, dst: Path) -> None:
    if src.resolve() != dst.resolve():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _check_voice_folder(spec: str) -> None:
    """A plain voice folder (not FORMAT:PATH) must exist and hold recordings: say so in the voice's
    own terms before the corpus reader speaks of speakers and layouts."""
    from deepfake_audio.training.datasets import parse_corpus_spec
    from deepfake_audio_core.audio_io import SUPPORTED_EXTENSIONS
    fmt, path = parse_corpus_spec(spec)
    if fmt != "auto":
        return
    if not path.is_dir():
        raise TrainingError(f"Voice folder not found: {path}")
    if not any(p.suffix.lower() in SUPPORTED_EXTENSIONS for p in path.rglob("*") if p.is_file()):
        raise TrainingError(f"No recordings in {path}: a voice folder holds the speaker's recordings as "
                            "<name>.wav, each with its transcript in <name>.txt beside it.")


def main(argv: list[str] | None = None) -> Path:
    from deepfake_audio.download import models_folder
    from deepfake_audio.training import synthesizer_preprocess as syn_pre, synthesizer_train as syn_train
    args = build_parser().parse_args(argv)
    _check_voice_folder(args.voice)
    out = args.out
    models = models_folder(args.models)
    synth_ckpt = args.synthesizer or _in_use(models)
    if args.tuned_voice is not None:
        return _tune(args, synth_ckpt, models)
    if args.minutes is not None:
        raise TrainingError("--minutes is the budget of --tuned-voice; a models folder trains for --steps.")
    if args.takes_language != "auto":
        raise TrainingError("--takes-language is for --tuned-voice: a models folder trains the whole synthesizer.")
    if args.vocoder_share is not None:
        raise TrainingError("--vocoder-share is for --tuned-voice; a models folder tunes its vocoder with "
                            "--finetune-vocoder.")
    args.steps = 1000 if args.steps is None else args.steps
    args.lr = 3e-5 if args.lr is None else args.lr
    args.batch_size = 8 if args.batch_size is None else args.batch_size
    vocoder_ckpt = args.vocoder or models / "vocoder.pt"
    common = ["--workers", str(args.workers), "--seed", str(args.seed)] + (["--quiet"] if args.quiet else []) \
        + (["--device", args.device] if args.device else [])

    pre = [args.voice, "--out", str(out / "data" / "synthesizer"), "--workers", str(args.workers)]
    pre += (["--encoder", str(args.encoder)] if args.encoder else []) + (["--quiet"] if args.quiet else [])
    syn_pre.main(pre)

    synth_run = out / "runs" / "synthesizer"
    source = synth_run / syn_train.CHECKPOINT
    if not source.is_file():
        source = synth_ckpt
    base = load_training_checkpoint(source)
    run_args = [str(out / "data" / "synthesizer"), "--run-dir", str(synth_run), "--init", str(synth_ckpt),
                "--steps", str(args.steps), "--save-every", str(args.save_every),
                "--sample-every", str(args.sample_every), *common]
    if base.get("architecture") == "fastspeech":  # the starter synthesizer: constant rate, no warm-up
        from deepfake_audio.training import fastspeech_train
        fastspeech_train.main(run_args + ["--hparams", f"learning_rate={args.lr!r}", "warmup_steps=1",
                                          f"total_steps={10 ** 9}", f"batch_size={args.batch_size}",
                                          "binarization_start=0"])
    else:
        r = int(base["model_state"]["decoder.r"])
        schedule = f"tts_schedule=(({r}, {args.lr!r}, {args.steps}, {args.batch_size}),)"
        syn_train.main(run_args + ["--hparams", schedule, "--guided-attention", str(args.guided_attention)])
    _copy(synth_run / syn_train.CHECKPOINT, out / "synthesizer.pt")

    if args.finetune_vocoder:
        from deepfake_audio.training import vocoder_preprocess as voc_pre, vocoder_train as voc_train
        if not vocoder_ckpt.is_file():
            raise TrainingError(f"--finetune-vocoder needs a vocoder to start from; not found: {vocoder_ckpt}")
        voc_pre.main([str(out / "data" / "synthesizer"), "--out", str(out / "data" / "vocoder"),
                      "--synthesizer", str(out / "synthesizer.pt")] + (["--quiet"] if args.quiet else [])
                     + (["--device", args.device] if args.device else []))
        voc_run = out / "runs" / "vocoder"
        voc_train.main([str(out / "data" / "vocoder"), "--run-dir", str(voc_run), "--init", str(vocoder_ckpt),
                        "--steps", str(args.vocoder_steps), "--hparams", f"voc_lr={args.vocoder_lr!r}",
                        f"voc_batch_size={args.vocoder_batch_size}", "--save-every", str(args.save_every),
                        "--sample-every", str(args.sample_every), *common])
        _copy(voc_run / voc_train.CHECKPOINT, out / "vocoder.pt")
    elif vocoder_ckpt.is_file():
        _copy(vocoder_ckpt, out / "vocoder.pt")
    if args.encoder:
        _copy(args.encoder, out / "encoder.pt")
    if not args.quiet:
        print(f"fine-tuned models in {out}: python -m deepfake_audio clone --models {out} --voice <wav> "
              "--text <text> --out speech.wav")
    return out


def _in_use(models: Path) -> Path:
    """The synthesizer a clone uses: the folder's, else the shipped starter."""
    from deepfake_audio.download import STARTER_MODELS_DIR
    own = models / "synthesizer.pt"
    return own if own.is_file() else STARTER_MODELS_DIR / "synthesizer.pt"


def _tune(args: argparse.Namespace, synthesizer: Path, models: Path) -> Path:
    """--tuned-voice: one small tuned voice within the time budget (`training.voice_tuning`)."""
    from deepfake_audio_core.tuned import SUFFIX
    from deepfake_audio.training.voice_tuning import SAMPLE_TEXT, VOCODER_SHARE, TuningJob, read_progress, tune_voice
    if args.finetune_vocoder:
        raise TrainingError("--finetune-vocoder makes a models folder; a tuned voice tunes its own starter vocoder "
                            "by itself (--vocoder-share).")
    share = VOCODER_SHARE if args.vocoder_share is None else args.vocoder_share
    if not 0 <= share < 1:
        raise TrainingError(f"--vocoder-share must be at least 0 and below 1, got {share:g}.")
    minutes = 10.0 if args.minutes is None else args.minutes
    if not 0 < minutes <= 24 * 60:
        raise TrainingError(f"--minutes must be above 0 and at most a day (1440), got {minutes:g}.")
    name = args.name or args.tuned_voice.name.removesuffix(SUFFIX).removesuffix(".pt")
    job = TuningJob(Path(args.voice), args.out, args.tuned_voice, synthesizer, name, minutes * 60, encoder=args.encoder, models=models,
                    lr=args.lr, batch_size=args.batch_size or 16, steps=args.steps,
                    sample_text=args.sample_text or SAMPLE_TEXT, seed=args.seed, quiet=args.quiet,
                    timbre_only={"auto": None, "english": False, "other": True}[args.takes_language],
                    vocoder_share=share)
    path = tune_voice(job)
    if not args.quiet:
        print(f"tuned voice in {path}: python -m deepfake_audio clone --voice {path} --text <text> --out speech.wav")
        print(_vocoder_outcome(read_progress(args.out).get("vocoder")))
    return path


def _vocoder_outcome(vocoder: dict | None) -> str:
    """One line on the voice's own starter vocoder, from the job's progress.json entry."""
    if not vocoder:
        return "Its own vocoder: none (the starter vocoder does not speak its clones, or --vocoder-share 0)."
    state = vocoder.get("state")
    if state in ("kept", "not kept"):
        scores = f"validation {vocoder.get('validation')} with it, {vocoder.get('without')} without"
        return f"Its own vocoder: {state} ({scores})."
    return f"Its own vocoder: {state}" + (f" ({vocoder['reason']})." if vocoder.get("reason") else ".")


cli = console_entry(main)


if __name__ == "__main__":
    raise SystemExit(cli())
