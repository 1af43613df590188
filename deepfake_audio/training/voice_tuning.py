"""Tune one voice within a time budget: the job behind `sv2tts-finetune --tuned-voice` and the studio.

The synthesizer in use (the starter, or a Tacotron) continues on the voice's recordings
with only the parameters that draw the mel from the speaker trainable
(`synthesizer.tuning`), at a constant learning rate, in pieces of a few minutes. After
each piece the tuned share is written as a tuned voice file (`core.tuned`, a few MB) and
a sample sentence is spoken with it, so that a listener hears the voice come closer (a
first sample, step 0, is the base model speaking the voice before any training); each
sample's speaker similarity to the takes (cosine of its embedding, at the takes' speech
level, to their mean embedding) says the same in a number.
A voice tuned for long on few takes can drift away from the speaker after a few minutes
(bench/RESULTS.md), so the job keeps the piece that validates best, not the last one:
clones of the sample and of `VALIDATION_TEXTS` (sentences no take has) are scored against
the embeddings of validation takes, a share of the takes held out of training
(`validation_split`; with few takes, all of them). When the job ends, the tuned voice file
is the kept piece.
Takes in another language than English (`timbre_only`; by default when their transcripts are
not English by their letters or their words: `training.takes_language`) train only the parts that colour the
voice (`synthesizer.tuning.timbre_prefixes`), so that the voice's English words stay as clear
as the base model says them.
Where the clones are spoken by the starter vocoder, the last `vocoder_share` of the budget
continues that vocoder on the training takes (their true mels and audio) as well: a voice far
from the voices it learnt from (a high voice, a child's) comes out nearer itself (bench/RESULTS.md).
Only where some takes are held out to judge it (`VALIDATION_SPLIT_FROM` takes or more): judged on
the takes it learnt, it would always seem better.
The tuned vocoder joins the tuned voice file only where it validates better than the shipped one
by `VOCODER_MIN_GAIN` (the same six clones, the validation's and `VOCODER_VALIDATION_TEXTS`', scored
the same way), and it speaks that voice only.
The whole job (preparation, training, samples) keeps to `budget` seconds of wall time,
counted across restarts: running the same command again resumes where it stopped.

`<work>/progress.json` says where the job is, for the studio and for scripts:

    {"state": "preparing" | "training" | "vocoder" | "done" | "failed", "budget_s", "spent_s",
     "step", "recorded_s", "takes", "validation_takes" (0: all takes validate), "timbre_only",
     "samples": [{"step", "spent_s", "path", "similarity", "validation", "vocoder" (true: the voice's own)}],
     "kept": {"step", "validation"} (the piece kept so far), "tuned_voice": path or null,
     "vocoder": {"state": "training" | "kept" | "not kept" | "skipped", "step", "validation" (with it),
                 "without", "clones" (how many each judged on), "reason"}
                (absent where the clones are not spoken by the starter vocoder),
     "error": message or null}

and `<work>/training.json` the step and the losses so far (`loop.ProgressFile`);
`<work>/vocoder_training.json` the same of the vocoder.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio.training import TrainingError
from deepfake_audio.training.files import METADATA, atomic_write, read_jsonl, read_metadata, write_jsonl
from deepfake_audio.training.takes_language import other_language

PROGRESS = "progress.json"
TRAINING = "training.json"
SAMPLE_TEXT = "This is my own voice, tuned on a few minutes of my recordings."
PIECE_SECONDS = 90.0  # a sample clone (and a validation) every this much training
SHORT_JOB_PIECE_SECONDS = 30.0  # the shortest piece a short budget is cut into (a quarter of it)
MIN_PIECE_SECONDS = 20.0  # a remainder shorter than this is not worth a restart of the model
# Constant learning rates of the tuned parameters (Adam). The starter's: 5e-5 and 2e-4 reached the same
# similarity after 4.5 minutes on a held-out voice (bench/RESULTS.md); the Tacotron's is not measured.
LEARNING_RATES = {"fastspeech": 1e-4, "tacotron": 1e-4}
BATCH_SIZE = 16
# The starter's speaker-consistency loss (the frozen speaker encoder's verdict on the output mels, as
# in its own training) towards the voice's recordings; measured with and without (bench/RESULTS.md).
CONSISTENCY = 1.0
# Validation of each piece: the sample and these sentences (in no prompt list or corpus), cloned with
# seeds 0, 1, 2, ... and scored against the validation takes.
VALIDATION_TEXTS = ("A quiet walk along the river in the morning helps me think clearly.",
                    "Could you send the results to everyone on the team before Friday?")
# Takes held out of training to validate on: this share of them, at most `VALIDATION_TAKES_MAX`,
# when there are at least `VALIDATION_SPLIT_FROM` takes (below that every take trains and validates).
VALIDATION_SHARE = 0.1
VALIDATION_TAKES_MAX = 8
VALIDATION_SPLIT_FROM = 20
KEPT = "kept.tuned.pt"  # in the work folder: the piece that validated best so far
VOCODER_TRAINING = "vocoder_training.json"
# The voice's own starter vocoder: the share of the budget it trains in (after the synthesizer), its
# constant learning rate (a tenth of its first training's), the least validation gain that keeps it
# (the same clones with the shipped vocoder and with the tuned one), and the least time worth training.
VOCODER_SHARE = 0.25
VOCODER_LR = 2e-4
VOCODER_MIN_GAIN = 0.01
MIN_VOCODER_SECONDS = 30.0
# The vocoder is judged on these sentences too (seeds after the validation's), with it and without: its
# choice is made once, and three clones were too few for it. A real man's own vocoder gained +0.015 on
# the three and +0.000 on six (+0.006 in a second job), where his held-out recordings found it worse
# (-0.01); the voices it helped gained +0.018 to +0.036 (bench/RESULTS.md): hence the 0.01 it needs.
VOCODER_VALIDATION_TEXTS = ("The weather turned cold just as the market opened its doors.",
                            "Please remember to water the plants while I am away next week.",
                            "He found an old map folded inside the book he had borrowed.")


@dataclass
class TuningJob:
    """What to tune and where: the voice's folder of <name>.wav + <name>.txt, the work folder, the output."""

    voice: Path  # recordings with transcripts (any layout the preprocessing reads)
    work: Path  # data, run and samples; progress.json
    out: Path  # the tuned voice file to write
    synthesizer: Path  # the base synthesizer's weights
    name: str
    budget: float  # seconds of wall time for the whole job
    encoder: Path | None = None
    models: Path | None = None  # the folder the samples are spoken with (the base's)
    lr: float | None = None  # None: `LEARNING_RATES` of the architecture
    batch_size: int = BATCH_SIZE
    steps: int | None = None  # a cap on the steps as well as the budget
    sample_text: str = SAMPLE_TEXT
    piece: float = PIECE_SECONDS
    seed: int = 1234
    quiet: bool = False
    snapshots: bool = False  # keep each piece's tuned voice in <work>/snapshots/ (to measure a curve)
    consistency: float = CONSISTENCY  # weight of the speaker-consistency loss (starter only)
    timbre_only: bool | None = None  # train only the voice's colour; None: when the takes are not in English
    vocoder_share: float = VOCODER_SHARE  # of the budget, for the voice's own starter vocoder (0: none)


class _Progress:
    """progress.json of a job, kept in memory and written atomically on every change."""

    def __init__(self, work: Path, budget: float):
        self.path = work / PROGRESS
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}
        self.data.update(budget_s=budget, error=None)
        self.data.setdefault("spent_s", 0.0)
        self.data.setdefault("samples", [])
        self.data.setdefault("step", 0)
        self.started = time.monotonic()
        self.spent_before = float(self.data["spent_s"])
        # A job stopped in the middle of a piece (a killed process, a restarted server) trained
        # until training.json's last write: that time counts against the budget too.
        trained_until = _read_json(work / TRAINING).get("updated")
        if isinstance(trained_until, (int, float)) and trained_until > self.data.get("updated", trained_until):
            self.spent_before += trained_until - float(self.data["updated"])

    @property
    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def update(self, **values) -> None:
        self.data.update(values, spent_s=round(self.spent, 1), updated=time.time())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(json.dumps(self.data, indent=1)))


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_progress(work: Path | str) -> dict:
    """A job's progress.json merged with its training.json: "losses", and "step" as training logs it
    (progress.json's own is written between pieces only); {} before it starts."""
    work = Path(work)
    out = _read_json(work / PROGRESS)
    training = _read_json(work / TRAINING)
    if training:
        out["losses"] = training.get("losses", [])
        if isinstance(training.get("step"), int) and training["step"] > int(out.get("step") or 0):
            out["step"] = training["step"]
    return out


def tune_voice(job: TuningJob) -> Path:
    """Run (or resume) `job`; returns the tuned voice file. Raises `TrainingError` on bad input."""
    from synthesizer.inference import Synthesizer
    progress = _Progress(job.work, job.budget)  # a finished job run again goes on while budget or steps are left
    try:
        from synthesizer.tuning import TUNABLE_PREFIXES, timbre_prefixes
        base = Synthesizer(job.synthesizer)
        architecture, fingerprint = base.architecture, base.fingerprint
        timbre = timbre_prefixes(base.model, architecture)
        del base
        # A resumed run keeps the frozen weights it started beside; its share fits only that base.
        started_on = progress.data.get("base")
        if started_on not in (None, fingerprint) and (job.work / "run" / "synthesizer.pt").is_file():
            raise TrainingError(f"{job.work} holds a tuning started on another synthesizer than {job.synthesizer}: "
                                "use a new work folder (--out), or delete its run/ folder to start over.")
        progress.update(base=fingerprint)
        progress.update(state="preparing")
        data = _prepare(job)
        records = read_metadata(data, ("mel", "embed", "text"))
        recorded = float(sum(r["n_frames"] for r in records)) * 0.0125
        embedding, pitch, level = _voice_of(records)
        training, validation = validation_split(records)
        if validation is not training:  # the held-out takes leave the training data
            held = {r["id"] for r in validation}
            write_jsonl(data / METADATA, [r for r in read_jsonl(data / METADATA) if r["id"] not in held])
        timbre_only = job.timbre_only if job.timbre_only is not None else other_language([r["text"] for r in records])
        progress.update(recorded_s=round(recorded, 1), takes=len(records),
                        validation_takes=0 if validation is training else len(validation), timbre_only=timbre_only)
        targets = np.stack([np.load(r["embed"]) for r in validation]).astype(np.float32)
        speaker = _SampleSpeaker(job, embedding, pitch, level, targets)
        base_vocoder = speaker.starter_vocoder() if job.vocoder_share > 0 else None
        if base_vocoder is not None and validation is training:
            # Judged on the takes it learnt, a voice's vocoder would always seem better: with two minutes
            # of a real man (9 takes) it validated +0.024 and his held-out recordings found it worse.
            progress.update(vocoder={"state": "skipped", "reason": f"too few takes to judge its own vocoder: "
                                     f"{len(records)} (with {VALIDATION_SPLIT_FROM} or more, some are held out "
                                     "to judge it on)"})
            base_vocoder = None
        reserve = job.vocoder_share * job.budget if base_vocoder is not None else 0.0
        if not progress.data["samples"]:  # before any training: the voice as the base model speaks it
            sample, similarity, score = speaker.speak(None, 0)
            progress.data["samples"].append({"step": 0, "spent_s": round(progress.spent, 1), "path": str(sample),
                                             "similarity": similarity, "validation": score})
            progress.update()
        trained_now = False  # a piece trained in this run: the voice file changes, so its vocoder is judged anew
        while True:
            left = job.budget - reserve - progress.spent
            if left < MIN_PIECE_SECONDS or (job.steps is not None and progress.data["step"] >= job.steps):
                break
            progress.update(state="training")
            # A short job gets shorter pieces, so that there are pieces to keep from (few takes drift soon).
            piece = min(job.piece, max(SHORT_JOB_PIECE_SECONDS, job.budget / 4))
            step = _train_piece(job, data, architecture, min(piece, left - speaker.cost),
                                timbre if timbre_only else TUNABLE_PREFIXES[architecture])
            voice = _export(job, architecture, fingerprint, embedding, pitch, step, recorded, len(records),
                            progress.spent, timbre_only)
            sample, similarity, score = speaker.speak(voice, step)
            if job.snapshots:
                (job.work / "snapshots").mkdir(exist_ok=True)
                shutil.copyfile(job.out, job.work / "snapshots" / f"step_{step:06d}_{progress.spent:.0f}s.tuned.pt")
            progress.data["samples"].append({"step": step, "spent_s": round(progress.spent, 1), "path": str(sample),
                                             "similarity": similarity, "validation": score})
            if _better(score, progress.data.get("kept")) or not (job.work / KEPT).is_file():
                atomic_write(job.work / KEPT, lambda tmp: shutil.copyfile(job.out, tmp))
                progress.data["kept"] = {"step": step, "validation": score}
            progress.update(step=step, tuned_voice=str(job.out))
            trained_now = True
            if step == progress.data.get("last_step"):  # nothing trained (steps reached): stop
                break
            progress.data["last_step"] = step
        if not job.out.is_file():
            raise TrainingError(f"The time budget ({job.budget:.0f} s) was used up before any training: give "
                                "the job more time.")
        kept = progress.data.get("kept")
        if (job.work / KEPT).is_file() and kept is not None and kept["step"] != progress.data["step"]:
            atomic_write(job.out, lambda tmp: shutil.copyfile(job.work / KEPT, tmp))  # an earlier piece validated best
        if base_vocoder is not None and (trained_now or (progress.data.get("vocoder") or {}).get("state")
                                         in (None, "training")):
            try:
                _tune_vocoder(job, data, base_vocoder, speaker, progress)
            except (TrainingError, OSError, ValueError, RuntimeError) as exc:  # the voice itself is made: keep it
                progress.update(vocoder={"state": "skipped", "reason": str(exc) or type(exc).__name__})
        progress.update(state="done")
        return job.out
    except Exception as exc:
        progress.update(state="failed", error=str(exc) or type(exc).__name__)
        raise


def validation_split(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training takes, validation takes) of a voice's preprocessed takes: takes evenly spaced in id
    order held out (`VALIDATION_SHARE`, at most `VALIDATION_TAKES_MAX`), the same split on every
    resume. With fewer than `VALIDATION_SPLIT_FROM` takes, all of them do both (one list, twice)."""
    if len(records) < VALIDATION_SPLIT_FROM:
        return records, records
    ordered = sorted(records, key=lambda r: r["id"])
    count = min(VALIDATION_TAKES_MAX, max(2, round(VALIDATION_SHARE * len(ordered))))
    held = {int(k) for k in np.linspace(0, len(ordered) - 1, count + 2)[1:-1].round()}
    return ([r for k, r in enumerate(ordered) if k not in held], [r for k, r in enumerate(ordered) if k in held])


def _better(score: float | None, kept: dict | None) -> bool:
    """Whether a piece validating at `score` replaces the `kept` one (a piece without a score, all
    its clones silent, replaces none that has one)."""
    if kept is None:
        return True
    if score is None or kept.get("validation") is None:
        return kept.get("validation") is None
    return score > kept["validation"]


def _prepare(job: TuningJob) -> Path:
    """Mels, audio, embeddings (and, for a pitch-aware starter, F0 at training time) of the recordings."""
    from deepfake_audio.training import synthesizer_preprocess
    data = job.work / "data"
    args = [str(job.voice), "--out", str(data), "--workers", "1"] + (["--quiet"] if job.quiet else [])
    synthesizer_preprocess.main(args + (["--encoder", str(job.encoder)] if job.encoder else []))
    return data


def _voice_of(records: list[dict]) -> tuple[np.ndarray, tuple[float, float] | None, float | None]:
    """The voice's embedding (normalised mean of its recordings'), pitch (median Hz, log-F0 spread) and
    speech level (median dBFS of the recordings as the encoder hears them, None without their audio)."""
    from deepfake_audio_core.pitch import pitch_stats
    from encoder.audio import power_dbfs, preprocess_wav
    embeds = np.stack([np.load(r["embed"]) for r in records]).astype(np.float32)
    mean = embeds.mean(0)
    mean /= max(float(np.linalg.norm(mean)), 1e-9)
    audio = [np.load(r["audio"]) for r in records if "audio" in r][:40]  # about a minute is plenty
    stats = pitch_stats(np.concatenate(audio)) if audio else None
    levels = [power_dbfs(preprocess_wav(a)) for a in audio]  # as the embeddings were made (preprocessing)
    levels = [v for v in levels if np.isfinite(v)]
    return (mean, (None if stats is None else (stats.median_hz, stats.log_f0_spread)),
            float(np.median(levels)) if levels else None)


def _train_piece(job: TuningJob, data: Path, architecture: str, seconds: float, prefixes: tuple[str, ...]) -> int:
    """Train the parameters named by `prefixes` (the tuned share, or the part of it that colours the
    voice) for `seconds` (or to the step cap); returns the step reached."""
    from deepfake_audio.training.loop import OPEN_ENDED
    run = job.work / "run"
    lr = job.lr if job.lr is not None else LEARNING_RATES[architecture]
    args = [str(data), "--run-dir", str(run), "--init", str(job.synthesizer), "--time-limit", f"{max(seconds, 1.0):.1f}",
            "--steps", str(job.steps if job.steps is not None else OPEN_ENDED), "--save-every", "50",
            "--sample-every", "0", "--log-every", "5", "--workers", "0", "--seed", str(job.seed),
            "--progress-file", str(job.work / TRAINING), "--train-only", *prefixes]
    args += ["--quiet"] if job.quiet else []
    if architecture == "fastspeech":
        from deepfake_audio.training import fastspeech_train
        summary = fastspeech_train.main(args + ["--hparams", f"learning_rate={lr!r}", "warmup_steps=1",
                                                f"total_steps={10 ** 9}", f"batch_size={job.batch_size}",
                                                "binarization_start=0", f"consistency_loss_weight={job.consistency!r}",
                                                "consistency_bank_weight=0.0"])
    else:
        from deepfake_audio.training import synthesizer_train
        from deepfake_audio_core.checkpoint import read_checkpoint
        source = run / synthesizer_train.CHECKPOINT
        r = int(read_checkpoint(source if source.is_file() else job.synthesizer)["model_state"]["decoder.r"])
        schedule = f"tts_schedule=(({r}, {lr!r}, {10 ** 9}, {job.batch_size}),)"
        summary = synthesizer_train.main(args + ["--hparams", schedule])
    return int(summary.step)


def _tune_vocoder(job: TuningJob, data: Path, base: Path, speaker: "_SampleSpeaker", progress: _Progress) -> None:
    """Continue the starter vocoder `base` on the training takes for what is left of the budget, then
    keep it in the tuned voice file where the kept voice's validation clones score higher with it."""
    from deepfake_audio.training import starter_vocoder_data, starter_vocoder_train
    from deepfake_audio.training.loop import OPEN_ENDED
    from deepfake_audio_core.checkpoint import read_checkpoint
    from deepfake_audio_core.tuned import load_tuned_voice
    from vocoder.tuning import is_tunable, tunable_prefixes
    run, pack = job.work / "vocoder_run", job.work / "vocoder_data"
    judging = 3 * speaker.cost  # its judgement: 9 clones (a sample with it, 3 more each way), 3 samples' time
    left = job.budget - progress.spent - judging
    if left < MIN_VOCODER_SECONDS and not (run / starter_vocoder_train.CHECKPOINT).is_file():
        progress.update(vocoder={"state": "skipped", "reason": "no time was left for it"})
        return
    progress.update(state="vocoder", vocoder={"state": "training", "step": 0})
    if not (pack / "index.json").is_file():  # the training takes' true mels, audio and F0
        starter_vocoder_data.build([data], pack, workers=1, quiet=True)
    left = job.budget - progress.spent - judging
    shipped = speaker.pipeline.starter_vocoder  # loaded from `base`
    blocks = len(shipped.model.backbone.blocks)
    args = [str(pack), "--run-dir", str(run), "--init", str(base), "--time-limit", f"{max(left, 1.0):.1f}",
            "--steps", str(job.steps if job.steps is not None else OPEN_ENDED), "--save-every", "50",
            "--log-every", "10", "--seed", str(job.seed), "--progress-file", str(job.work / VOCODER_TRAINING),
            "--train-only", *tunable_prefixes(blocks),
            "--hparams", f"learning_rate={VOCODER_LR!r}", "warmup_steps=1", f"total_steps={10 ** 9}"]
    summary = starter_vocoder_train.main(args + (["--quiet"] if job.quiet else []))
    state = read_checkpoint(run / starter_vocoder_train.CHECKPOINT)["model_state"]
    voice = load_tuned_voice(job.out)
    had = voice.vocoder is not None  # judged before, on an earlier kept piece
    plain = dataclasses.replace(voice, vocoder=None)  # the same voice with the shipped vocoder
    voice.vocoder = {"base": shipped.fingerprint,
                     "weights": {k: v for k, v in state.items() if is_tunable(k, blocks)},
                     "training": {"steps": int(summary.step), "base_path": str(base), "learning_rate": VOCODER_LR}}
    # the kept piece's validation clones (the same sentences and seeds) and `VOCODER_VALIDATION_TEXTS`'
    first = 1 + len(VALIDATION_TEXTS)
    without = _pooled((progress.data.get("kept") or {}).get("validation"), first,
                      speaker.validation_scores(plain, VOCODER_VALIDATION_TEXTS, first))
    sample, similarity, score = speaker.speak(voice, int(progress.data["step"]))
    score = _pooled(score, first, speaker.validation_scores(voice, VOCODER_VALIDATION_TEXTS, first))
    better = score is not None and (without is None or score >= without + VOCODER_MIN_GAIN)
    if not better:
        voice.vocoder = None
    if better or had:  # the kept piece too, so that a resumed job's copy of it keeps what was judged
        voice.save(job.out)
        atomic_write(job.work / KEPT, lambda tmp: shutil.copyfile(job.out, tmp))
    if better:
        progress.data["samples"].append({"step": int(progress.data["step"]), "spent_s": round(progress.spent, 1),
                                         "path": str(sample), "similarity": similarity, "validation": score,
                                         "vocoder": True})
    else:
        sample.unlink(missing_ok=True)
    progress.update(vocoder={"state": "kept" if better else "not kept", "step": int(summary.step),
                             "validation": score, "without": without,
                             "clones": first + len(VOCODER_VALIDATION_TEXTS)})


def _pooled(mean: float | None, count: int, more: list[float]) -> float | None:
    """The mean of `count` scores whose mean is `mean` (None: none scored) and the scores `more`."""
    scores = ([mean] * count if mean is not None else []) + list(more)
    return round(float(np.mean(scores)), 4) if scores else None


def _export(job: TuningJob, architecture: str, fingerprint: str, embedding: np.ndarray, pitch, step: int,
            recorded: float, takes: int, spent: float, timbre_only: bool = False):
    """Write the run's tuned share as the tuned voice file; returns the `TunedVoice`."""
    import torch
    from deepfake_audio_core.checkpoint import read_checkpoint
    from deepfake_audio_core.tuned import TunedVoice
    from synthesizer.tuning import is_tunable
    state = read_checkpoint(job.work / "run" / "synthesizer.pt")["model_state"]
    weights = {k: v.to(torch.float16) for k, v in state.items() if is_tunable(k, architecture)}
    voice = TunedVoice(job.name, architecture, fingerprint, embedding, weights,
                       None if pitch is None else pitch[0], None if pitch is None else pitch[1],
                       {"steps": step, "seconds": round(spent, 1), "recorded_seconds": round(recorded, 1),
                        "takes": takes, "base_path": str(job.synthesizer), "made": time.time(),
                        "timbre_only": timbre_only})
    voice.save(job.out)
    voice.path = job.out
    return voice


class _SampleSpeaker:
    """Speaks the sample sentence with each new tuned voice and scores it against the takes;
    remembers how long that takes."""

    def __init__(self, job: TuningJob, embedding: np.ndarray, pitch: tuple[float, float] | None,
                 level: float | None, targets: np.ndarray):
        self.job = job
        self.embedding = embedding  # (256,) the takes' normalised mean embedding
        self.pitch = pitch  # the takes' (median Hz, log-F0 spread), None when unknown
        self.level = level  # the takes' speech level (dBFS), None when unknown
        self.targets = targets  # (V, 256) the validation takes' embeddings
        self.pipeline = None
        self.cost = 10.0  # seconds reserved for a sample and its validation until one has been timed

    def _open(self) -> None:
        """The pipeline the samples are spoken with (made once)."""
        from deepfake_audio.pipeline import Pipeline
        if self.pipeline is None:
            self.pipeline = Pipeline(self.job.models, synthesizer=self.job.synthesizer, encoder=self.job.encoder,
                                     device="cpu")
            if self.level is not None:  # the encoder hears level: score the sample at the takes'
                self.pipeline.remember_level(self.embedding, self.level)
            if self.pitch is not None:  # the base model speaks the embedding at the takes' pitch
                self.pipeline.remember_pitch(self.embedding, *self.pitch)

    def starter_vocoder(self) -> Path | None:
        """The starter vocoder's weights where it is what speaks the samples (no WaveRNN loaded), else None."""
        self._open()
        return self.pipeline.starter_vocoder_path if self.pipeline.default_vocoder() == "starter" else None

    def speak(self, voice, step: int) -> tuple[Path, float | None, float | None]:
        """The sample spoken with the tuned `voice` (None: the base model with the takes' embedding and
        pitch) as a WAV, its speaker similarity to the takes (None for a silent sample), and its
        validation score: the mean cosine of the sample's and `VALIDATION_TEXTS`' clones (at the
        takes' level) to each validation take (None if every clone is silent)."""
        from deepfake_audio_core.audio_io import write_wav
        began = time.monotonic()
        self._open()
        path = self.job.work / "samples" / f"step_{step:06d}{'_vocoder' if getattr(voice, 'vocoder', None) else ''}.wav"
        result = self.pipeline.clone(text=self.job.sample_text, seed=0, **self._speaking(voice))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, result.wav, result.sample_rate)  # the sample the listener hears
        heard = self._heard(result)
        similarity = None if heard is None else round(self.pipeline.similarity(heard, self.embedding), 3)
        scores = ([] if heard is None else [float(np.mean(self.targets @ heard))])
        scores += self.validation_scores(voice, VALIDATION_TEXTS, 1)
        self.cost = time.monotonic() - began
        return path, similarity, (round(float(np.mean(scores)), 4) if scores else None)

    def validation_scores(self, voice, texts: tuple[str, ...], first_seed: int) -> list[float]:
        """The validation score of each clone of `texts` (seeds from `first_seed`) spoken with the tuned
        `voice` (None: the base model): the mean cosine of its embedding, at the takes' level, to each
        validation take's. Silent clones have none."""
        self._open()
        scores = []
        for seed, text in enumerate(texts, start=first_seed):
            heard = self._heard(self.pipeline.clone(text=text, seed=seed, **self._speaking(voice)))
            if heard is not None:
                scores.append(float(np.mean(self.targets @ heard)))
        return scores

    def _speaking(self, voice) -> dict:
        return {"embedding": self.embedding} if voice is None else {"tuned": voice}

    def _heard(self, result) -> np.ndarray | None:
        """A clone's embedding at the takes' level (None for a silent clone)."""
        return self.pipeline.embed_output(result.wav, result.sample_rate,
                                          like=self.embedding if self.level is not None else None)
