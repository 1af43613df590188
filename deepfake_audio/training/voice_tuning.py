"""Tune one voice within a time budget: the job behind `sv2tts-finetune --tuned-voice` and the studio.

The synthesizer in use (the starter, or a Tacotron) continues on the voice's recordings
with only the parameters that draw the mel from the speaker trainable
(`synthesizer.tuning`), at a constant learning rate, in pieces of a few minutes. After
each piece the tuned share is written as a tuned voice file (`core.tuned`, a few MB) and
a sample sentence is spoken with it, so that a listener hears the voice come closer (a
first sample, step 0, is the base model speaking the voice before any training); each
sample's speaker similarity to the takes (cosine of its embedding, at the takes' speech
level, to their mean embedding) says the same in a number.
The whole job (preparation, training, samples) keeps to `budget` seconds of wall time,
counted across restarts: running the same command again resumes where it stopped.

`<work>/progress.json` says where the job is, for the studio and for scripts:

    {"state": "preparing" | "training" | "done" | "failed", "budget_s", "spent_s",
     "step", "recorded_s", "takes", "samples": [{"step", "spent_s", "path", "similarity"}],
     "tuned_voice": path or null, "error": message or null}

and `<work>/training.json` the step and the losses so far (`loop.ProgressFile`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio.training import TrainingError
from deepfake_audio.training.files import atomic_write, read_metadata

PROGRESS = "progress.json"
TRAINING = "training.json"
SAMPLE_TEXT = "This is my own voice, tuned on a few minutes of my recordings."
PIECE_SECONDS = 150.0  # a sample clone every this much training: "every few minutes"
MIN_PIECE_SECONDS = 20.0  # a remainder shorter than this is not worth a restart of the model
# Constant learning rates of the tuned parameters (Adam). The starter's: 5e-5 and 2e-4 reached the same
# similarity after 4.5 minutes on a held-out voice (bench/RESULTS.md); the Tacotron's is not measured.
LEARNING_RATES = {"fastspeech": 1e-4, "tacotron": 1e-4}
BATCH_SIZE = 16
# The starter's speaker-consistency loss (the frozen speaker encoder's verdict on the output mels, as
# in its own training) towards the voice's recordings; measured with and without (bench/RESULTS.md).
CONSISTENCY = 1.0


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
        base = Synthesizer(job.synthesizer)
        architecture, fingerprint = base.architecture, base.fingerprint
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
        progress.update(recorded_s=round(recorded, 1), takes=len(records))
        embedding, pitch, level = _voice_of(records)
        speaker = _SampleSpeaker(job, embedding, pitch, level)
        if not progress.data["samples"]:  # before any training: the voice as the base model speaks it
            sample, similarity = speaker.speak(None, 0)
            progress.data["samples"].append({"step": 0, "spent_s": round(progress.spent, 1), "path": str(sample),
                                             "similarity": similarity})
            progress.update()
        while True:
            left = job.budget - progress.spent
            if left < MIN_PIECE_SECONDS or (job.steps is not None and progress.data["step"] >= job.steps):
                break
            progress.update(state="training")
            step = _train_piece(job, data, architecture, min(job.piece, left - speaker.cost))
            voice = _export(job, architecture, fingerprint, embedding, pitch, step, recorded, len(records),
                            progress.spent)
            sample, similarity = speaker.speak(voice, step)
            if job.snapshots:
                import shutil
                (job.work / "snapshots").mkdir(exist_ok=True)
                shutil.copyfile(job.out, job.work / "snapshots" / f"step_{step:06d}_{progress.spent:.0f}s.tuned.pt")
            progress.data["samples"].append({"step": step, "spent_s": round(progress.spent, 1), "path": str(sample),
                                             "similarity": similarity})
            progress.update(step=step, tuned_voice=str(job.out))
            if step == progress.data.get("last_step"):  # nothing trained (steps reached): stop
                break
            progress.data["last_step"] = step
        if not job.out.is_file():
            raise TrainingError(f"The time budget ({job.budget:.0f} s) was used up before any training: give "
                                "the job more time.")
        progress.update(state="done")
        return job.out
    except Exception as exc:
        progress.update(state="failed", error=str(exc) or type(exc).__name__)
        raise


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


def _train_piece(job: TuningJob, data: Path, architecture: str, seconds: float) -> int:
    """Train the tuned share for `seconds` (or to the step cap); returns the step reached."""
    from deepfake_audio.training.loop import OPEN_ENDED
    from synthesizer.tuning import TUNABLE_PREFIXES
    run = job.work / "run"
    lr = job.lr if job.lr is not None else LEARNING_RATES[architecture]
    args = [str(data), "--run-dir", str(run), "--init", str(job.synthesizer), "--time-limit", f"{max(seconds, 1.0):.1f}",
            "--steps", str(job.steps if job.steps is not None else OPEN_ENDED), "--save-every", "50",
            "--sample-every", "0", "--log-every", "5", "--workers", "0", "--seed", str(job.seed),
            "--progress-file", str(job.work / TRAINING), "--train-only", *TUNABLE_PREFIXES[architecture]]
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


def _export(job: TuningJob, architecture: str, fingerprint: str, embedding: np.ndarray, pitch, step: int,
            recorded: float, takes: int, spent: float):
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
                        "takes": takes, "base_path": str(job.synthesizer), "made": time.time()})
    voice.save(job.out)
    voice.path = job.out
    return voice


class _SampleSpeaker:
    """Speaks the sample sentence with each new tuned voice and scores it against the takes;
    remembers how long that takes."""

    def __init__(self, job: TuningJob, embedding: np.ndarray, pitch: tuple[float, float] | None,
                 level: float | None):
        self.job = job
        self.embedding = embedding  # (256,) the takes' normalised mean embedding
        self.pitch = pitch  # the takes' (median Hz, log-F0 spread), None when unknown
        self.level = level  # the takes' speech level (dBFS), None when unknown
        self.pipeline = None
        self.cost = 10.0  # seconds reserved for a sample until one has been timed

    def speak(self, voice, step: int) -> tuple[Path, float | None]:
        """The sample spoken with the tuned `voice` (None: the base model with the takes' embedding and
        pitch) as a WAV, and its speaker similarity to the takes (None for a silent sample)."""
        from deepfake_audio.pipeline import Pipeline
        from deepfake_audio_core.audio_io import write_wav
        began = time.monotonic()
        if self.pipeline is None:
            self.pipeline = Pipeline(self.job.models, synthesizer=self.job.synthesizer, encoder=self.job.encoder,
                                     device="cpu")
            if self.level is not None:  # the encoder hears level: score the sample at the takes'
                self.pipeline.remember_level(self.embedding, self.level)
            if self.pitch is not None:  # the base model speaks the embedding at the takes' pitch
                self.pipeline.remember_pitch(self.embedding, *self.pitch)
        if voice is None:
            result = self.pipeline.clone(text=self.job.sample_text, embedding=self.embedding, seed=0)
        else:
            result = self.pipeline.clone(text=self.job.sample_text, tuned=voice, seed=0)
        path = self.job.work / "samples" / f"step_{step:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, result.wav, result.sample_rate)
        heard = self.pipeline.embed_output(result.wav, result.sample_rate,
                                           like=self.embedding if self.level is not None else None)
        similarity = None if heard is None else round(self.pipeline.similarity(heard, self.embedding), 3)
        self.cost = time.monotonic() - began
        return path, similarity
