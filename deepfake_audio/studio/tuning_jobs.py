"""The server's queue of "Train a voice" jobs: one runs at a time, beside the studio, at low priority.

A job tunes one voice on an owner's takes with the fine-tuning command the CLI uses
(`sv2tts-finetune --tuned-voice`, see `training.voice_tuning`), in a separate process at
the lowest CPU priority (nice 19, on half the cores: `tune_threads`), so clones stay responsive.
The others wait in line and know their place. The queue is a JSON file in the data
folder, written under a lock that holds across processes:

    tuning/jobs.json   [{"id", "library", "name", "minutes", "consent", "state", ...}, ...]

A job's files live in its owner's library, `training/jobs/<id>/`: `takes/` (the takes
it trains on, linked when it was queued), `work/` (the command's work folder, with
progress.json and the samples), `voice.tuned.pt` and `log.txt`.

When the studio stops, its job's process stops with it (Linux: PR_SET_PDEATHSIG); when it
starts again, the job that was running is started again and resumes where its last
checkpoint left it (the command counts its time budget across restarts). Of several
studio processes on one data folder, the one that holds `tuning/runner.lock` runs jobs;
any of them queues, reports and cancels. On success the tuned voice is saved in the
owner's library (or replaces the tuned model of the voice of that name that an earlier
job made), and the run's checkpoint and data are deleted; progress and samples stay.
Owners are isolated: a job is found only through the library it belongs to.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: every studio process runs jobs; keep to one process there
    fcntl = None

from deepfake_audio_core.errors import DeepfakeAudioError, RequestError
from deepfake_audio.studio.library import FolderLock, VoiceError
from deepfake_audio.training.voice_tuning import KEPT, VOCODER_TRAINING, read_progress

logger = logging.getLogger(__name__)

QUEUE_FOLDER = "tuning"
JOBS_FILE = "jobs.json"
JOBS_FOLDER = "jobs"  # under the owner's library folder's training/
BUDGETS = (3, 10, 20, 40)  # minutes a job may take, as the page offers them
MAX_MINUTES = 120  # what the API may ask for
MAX_ACTIVE = 20  # queued and running jobs on one server
MAX_ACTIVE_PER_OWNER = 2
MAX_FINISHED = 200  # finished jobs remembered (for their status), newest kept
ACTIVE = ("queued", "running")
STEPS_VARIABLE = "DEEPFAKE_AUDIO_TUNE_STEPS"  # a cap on every job's steps (tests, quick trials)
THREADS_VARIABLE = "DEEPFAKE_AUDIO_TUNE_THREADS"
STOP_WAIT_SECONDS = 10.0
# A job whose files show no sign of life for this long is taken for hung and stopped; so is one that
# runs far past its budget (the command keeps its own budget: this only catches what went wrong).
STALL_SECONDS = 20 * 60.0
OVERRUN_FACTOR, OVERRUN_SECONDS = 2.0, 15 * 60.0
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the deepfake_audio package


@dataclass
class TuningJob:
    """One job as the queue file keeps it (folders relative to the data folder)."""

    id: str
    library: str  # the owner's library folder: who may see and cancel the job
    name: str  # the voice's name
    minutes: float  # time budget
    consent: float  # unix seconds when the user confirmed the speaker's permission
    created: float
    folder: str  # the job's files
    takes: int = 0
    recorded_s: float = 0.0
    preview: str = ""  # the take whose audio becomes the voice's preview (a good one)
    state: str = "queued"  # queued, running, done, failed or cancelled
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    voice: str | None = None  # the saved voice, once done
    pid: int | None = None  # the running process
    steps: int | None = None  # a cap on the steps besides the time budget
    takes_language: str = "auto"  # "auto", "english" or "other": `sv2tts-finetune --takes-language`

    @classmethod
    def from_dict(cls, data: dict) -> "TuningJob":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def tune_threads() -> int:
    """Threads of a job: $DEEPFAKE_AUDIO_TUNE_THREADS, else half the cores (the studio keeps the rest)."""
    if os.environ.get(THREADS_VARIABLE):
        return max(1, int(os.environ[THREADS_VARIABLE]))
    return max(1, (os.cpu_count() or 2) // 2)


class TuningJobs:
    """The jobs of the studio on `data_dir`: queue, run (one at a time), report, cancel."""

    def __init__(self, data_dir: Path, pipeline, save_voice, *, poll_seconds: float = 1.0):
        """`save_voice(job, tuned_file)` saves a finished job's voice in its library and returns its name."""
        self.data_dir = Path(data_dir).resolve()  # the job's process gets absolute paths only
        self.pipeline = pipeline
        self.save_voice = save_voice
        self.poll_seconds = poll_seconds
        self.root = self.data_dir / QUEUE_FOLDER
        self._lock = FolderLock(self.root / ".lock")
        self._runner = None  # the open runner.lock while this process runs jobs
        self._process: subprocess.Popen | None = None
        self._running_id: str | None = None
        self._launched = 0.0  # time.time() when this process started the running job's process
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()

    # Requests

    def submit(self, library: Path, name: str, takes_dir: Path, *, minutes: float, consent: float, takes: int,
               recorded_s: float, preview: str, steps: int | None = None, takes_language: str = "auto") -> dict:
        """Queue a job on the takes already linked into `takes_dir` (inside the job's folder, see `new_folder`)."""
        key = self._key(library)
        job = TuningJob(takes_dir.parent.name, key, name, float(minutes), float(consent), time.time(),
                        str(takes_dir.parent.resolve().relative_to(self.data_dir)), takes, round(recorded_s, 1), preview,
                        steps=steps if steps is not None else _env_steps(), takes_language=takes_language)
        with self._lock:
            jobs = self._load()
            active = [j for j in jobs if j.state in ACTIVE]
            mine = [j for j in active if j.library == key]
            problem = None
            if any(j.name.casefold() == name.casefold() for j in mine):
                problem = f"{name!r} is already being trained: wait for that job, or cancel it first."
            elif len(mine) >= MAX_ACTIVE_PER_OWNER:
                problem = (f"You have {len(mine)} voices training or waiting already, the most at once: wait for "
                           "one to finish.")
            elif len(active) >= MAX_ACTIVE:
                problem = f"The studio's training queue is full ({MAX_ACTIVE} jobs): try again later."
            if problem:
                shutil.rmtree(takes_dir.parent, ignore_errors=True)
                raise RequestError(problem)
            jobs.append(job)
            self._save(jobs)
        self.start()
        return self._describe(job, jobs)

    def new_folder(self, library: Path) -> Path:
        """A fresh job folder in `library`'s training folder (its name is the job's id)."""
        folder = Path(library) / "training" / JOBS_FOLDER / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def jobs(self, library: Path) -> list[dict]:
        """The library's jobs, newest first."""
        key = self._key(library)
        with self._lock:
            jobs = self._load()
        return [self._describe(j, jobs) for j in reversed(jobs) if j.library == key]

    def status(self, library: Path, job_id: str) -> dict:
        """One of the library's jobs: see `_describe`."""
        with self._lock:
            jobs = self._load()
        return self._describe(self._find(jobs, library, job_id), jobs)

    def cancel(self, library: Path, job_id: str) -> dict:
        """Stop a queued or running job of the library; its files go, except progress and samples."""
        with self._lock:
            jobs = self._load()
            job = self._find(jobs, library, job_id)
            if job.state not in ACTIVE:
                raise RequestError(f"The training of {job.name!r} has already {job.state}: nothing to cancel.")
            job.state, job.finished, job.pid = "cancelled", time.time(), None
            self._save(jobs)
            if self._running_id == job.id:
                self._stop_process()
        self._clean(job)
        self._wake.set()
        return self._describe(job, jobs)

    # The runner

    def start(self) -> None:
        """Run the queue in a background thread of this process (once; no-op when it runs)."""
        if self._thread is not None and self._thread.is_alive():
            self._wake.set()
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="tuning-jobs", daemon=True)
        self._thread.start()

    def resume(self) -> bool:
        """At start-up: run the queue if it holds work (a job the last server left running resumes)."""
        if not (self.root / JOBS_FILE).is_file():
            return False
        with self._lock:
            waiting = any(j.state in ACTIVE for j in self._load())
        if waiting:
            self.start()
        return waiting

    def close(self, stop_job: bool = True) -> None:
        """Stop running the queue; with `stop_job` also the job's process (it resumes on the next start)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            if stop_job:
                self._stop_process()
            self._process = self._running_id = None
            if self._runner is not None:
                self._runner.close()  # releases the flock
                self._runner = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if not self.run_once() and self._idle():
                    return  # nothing left: the next submit starts the thread again
            except Exception:  # the queue must outlive one bad job
                logger.exception("The training queue failed a round")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _idle(self) -> bool:
        with self._lock:
            if self._process is not None or any(j.state in ACTIVE for j in self._load()):
                return False
            self._thread = None
            return True

    def run_once(self) -> bool:
        """One round: start the next job, or watch the running one and finish it. False when this
        process does not run jobs (another one does) or nothing is queued."""
        if not self._hold_runner():
            return False
        with self._lock:
            jobs = self._load()
            if self._process is None:
                job = next((j for j in jobs if j.state == "running"), None) \
                    or next((j for j in jobs if j.state == "queued"), None)
                if job is None:
                    return False
                self._launch(job)
                self._save(jobs)
                return True
            job = next((j for j in jobs if j.id == self._running_id), None)
            if job is None or job.state != "running":  # cancelled (by another process) or forgotten
                self._stop_process()
                return True
            code = self._process.poll()
            if code is None:
                hung = self._hung(job)
                if hung is None:
                    return True
                self._stop_process()
                job.state, job.finished, job.pid, job.error = "failed", time.time(), None, hung
                logger.warning("training %s (job %s): %s", job.name, job.id, hung)
            else:
                self._process = self._running_id = None
                self._finish(job, code)
            self._save(jobs)
        self._clean(job)
        return True

    def _hung(self, job: TuningJob) -> str | None:
        """Why the running job is taken for hung (its process is then stopped), or None while it is well:
        no file of its work folder or log changed for STALL_SECONDS, or it ran far past its budget."""
        folder = self.data_dir / job.folder
        now = time.time()
        signs = [folder / "log.txt", folder / "work" / "progress.json", folder / "work" / "training.json",
                 folder / "work" / VOCODER_TRAINING]
        for data in ("data", "vocoder_data"):  # while it prepares the takes, these folders fill (mels, audio...)
            try:
                signs += list((folder / "work" / data).iterdir())
            except OSError:
                pass
        alive = max([self._launched] + [_mtime(p, 0.0) for p in signs])
        if now - alive > STALL_SECONDS:
            return (f"The training stopped making progress (nothing for {(now - alive) / 60:.0f} minutes) and was "
                    "stopped: start it again.")
        if now - self._launched > OVERRUN_FACTOR * job.minutes * 60 + OVERRUN_SECONDS:
            return (f"The training ran far past its {job.minutes:g}-minute budget and was stopped: start it again.")
        return None

    def _hold_runner(self) -> bool:
        """Whether this process runs the jobs: it holds runner.lock (taken when free, kept until `close`)."""
        if self._runner is not None:
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "runner.lock", "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
        self._runner = handle
        return True

    def command(self, job: TuningJob) -> list[str]:
        """The fine-tuning command of a job (the CLI's own), on the studio's synthesizer and encoder."""
        folder = self.data_dir / job.folder
        command = [sys.executable, "-m", "deepfake_audio.training.finetune", str(folder / "takes"),
                   "--out", str(folder / "work"), "--tuned-voice", str(folder / "voice.tuned.pt"),
                   "--minutes", f"{job.minutes:g}", "--name", job.name, "--quiet"]
        models = getattr(self.pipeline, "models_dir", None)
        if models is not None:  # the samples are spoken with the studio's own models
            command += ["--models", str(Path(models).resolve())]
        synthesizer, encoder = getattr(self.pipeline, "synthesizer_path", None), getattr(self.pipeline,
                                                                                         "encoder_path", None)
        if synthesizer is not None and Path(synthesizer).is_file():
            command += ["--synthesizer", str(Path(synthesizer).resolve())]
        if encoder is not None and Path(encoder).is_file():
            command += ["--encoder", str(Path(encoder).resolve())]
        if job.steps is not None:
            command += ["--steps", str(job.steps)]
        if job.takes_language != "auto":
            command += ["--takes-language", job.takes_language]
        return command

    def _launch(self, job: TuningJob) -> None:
        """Start (or resume) `job`'s process; a process an earlier studio left behind is stopped first."""
        folder = self.data_dir / job.folder
        if job.pid is not None and _runs_in(job.pid, folder):
            _stop_group(job.pid)
        threads = str(tune_threads())
        # The package is found from a source checkout too (`python app.py` without installing it).
        path = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": path}
        # No preexec_fn: the job lowers its own priority (see `low_priority`), since Python code run
        # between fork and exec in this multi-threaded server can deadlock the child and the queue.
        command = self.command(job)
        command[1:3] = ["-m", "deepfake_audio.studio.low_priority", str(os.getpid()), command[2]]
        with open(folder / "log.txt", "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._running_id = job.id
        self._launched = time.time()
        job.state, job.pid = "running", self._process.pid
        job.started = job.started or time.time()
        logger.info("training %s (job %s, process %d)", job.name, job.id, job.pid)

    def _stop_process(self) -> None:
        if self._process is not None:
            _stop_group(self._process.pid, self._process)
        self._process = self._running_id = None

    def _finish(self, job: TuningJob, code: int) -> None:
        """A job's process exited: save the voice, or say why it failed."""
        folder = self.data_dir / job.folder
        progress = read_progress(folder / "work")
        tuned = folder / "voice.tuned.pt"
        job.finished, job.pid = time.time(), None
        if code == 0 and progress.get("state") == "done" and tuned.is_file():
            try:
                job.voice = self.save_voice(job, tuned)
                job.state = "done"
            except DeepfakeAudioError as exc:
                job.state, job.error = "failed", str(exc)
        else:
            job.state = "failed"
            job.error = progress.get("error") or _last_line(folder / "log.txt") or f"The job stopped (code {code})."
        logger.info("training %s (job %s): %s%s", job.name, job.id, job.state,
                    f" ({job.error})" if job.error else "")

    def _clean(self, job: TuningJob) -> None:
        """After a job ends: the big files go (run checkpoint, data, linked takes, the tuned copies). The
        kept piece goes too: the voice's model lives in the library only, so deleting the voice deletes it."""
        folder = self.data_dir / job.folder
        for part in ("work/run", "work/data", "work/snapshots", "takes"):
            shutil.rmtree(folder / part, ignore_errors=True)
        (folder / "work" / KEPT).unlink(missing_ok=True)
        if job.state == "done":
            (folder / "voice.tuned.pt").unlink(missing_ok=True)

    # The queue file

    def _key(self, library: Path) -> str:
        return str(Path(library).resolve().relative_to(self.data_dir))

    def _find(self, jobs: list[TuningJob], library: Path, job_id) -> TuningJob:
        key = self._key(library)
        job = next((j for j in jobs if j.id == str(job_id or "").strip() and j.library == key), None)
        if job is None:  # another owner's job reads the same as an unknown one
            raise VoiceError(f"There is no training job {str(job_id or '')[:40]!r} in your library; start one on "
                             "the Train a voice tab.")
        return job

    def _load(self) -> list[TuningJob]:
        try:
            rows = json.loads((self.root / JOBS_FILE).read_text(encoding="utf-8"))
            return [TuningJob.from_dict(r) for r in rows]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Could not read the training queue (%s); starting a new one", exc)
            return []

    def _save(self, jobs: list[TuningJob]) -> None:
        finished = [j for j in jobs if j.state not in ACTIVE]
        dropped = {j.id for j in finished[:-MAX_FINISHED]} if len(finished) > MAX_FINISHED else set()
        rows = [asdict(j) for j in jobs if j.id not in dropped]
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f".{JOBS_FILE}.{uuid.uuid4().hex[:6]}"
        staged.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(staged, self.root / JOBS_FILE)

    # Reports

    def _describe(self, job: TuningJob, jobs: list[TuningJob]) -> dict:
        """What a job's owner may know of it: state, place in line (0: running), step, seconds
        spent and left, losses [[step, loss], ...], the latest sample's path, each sample's
        [step, similarity to the takes] (step 0: before training; None where unknown), the step of
        the piece that validated best (the voice's, once done), whether only the voice's colour
        trains (takes in another language than English), error, voice."""
        queued = [j for j in jobs if j.state == "queued"]
        place = 0 if job.state == "running" else (queued.index(job) + 1 if job in queued else None)
        progress = read_progress(self.data_dir / job.folder / "work") if job.state != "queued" else {}
        budget = float(progress.get("budget_s", job.minutes * 60))
        spent = float(progress.get("spent_s", 0.0))
        if job.state == "running" and progress.get("state") in ("preparing", "training", "vocoder"):
            spent += max(0.0, time.time() - _mtime(self.data_dir / job.folder / "work" / "progress.json"))
        losses = [[int(s), float(v)] for s, v in progress.get("losses", [])]
        step = max([int(progress.get("step", 0))] + [s for s, _ in losses[-1:]])  # progress.json's: per piece
        samples = [s for s in progress.get("samples", []) if Path(s.get("path", "")).is_file()]
        ahead = [j for j in jobs if j.state == "running"] + (queued[:place - 1] if place else [])
        return {"id": job.id, "name": job.name, "state": job.state, "place": place,
                "phase": progress.get("state") if job.state == "running" else None,
                "step": step, "budget_s": budget, "spent_s": round(min(spent, budget), 1),
                "left_s": round(max(budget - spent, 0.0), 1) if job.state in ACTIVE else 0.0,
                "wait_s": round(sum(j.minutes * 60 for j in ahead), 1) if job.state == "queued" else 0.0,
                "losses": losses,
                "sample": samples[-1]["path"] if samples else None, "samples": len(samples),
                "similarities": [[int(s.get("step", 0)), s.get("similarity")] for s in samples],
                "kept_step": (progress.get("kept") or {}).get("step"),  # the piece the voice is, when done
                "timbre_only": progress.get("timbre_only"),  # takes not in English: only the voice's colour trains
                # the voice's own starter vocoder: "training", "kept", "not kept", "skipped"; None: not tried
                "vocoder": (progress.get("vocoder") or {}).get("state"),
                "takes": job.takes, "recorded_s": job.recorded_s, "minutes": job.minutes,
                "created": job.created, "started": job.started, "finished": job.finished,
                "error": job.error, "voice": job.voice}


def _env_steps() -> int | None:
    value = os.environ.get(STEPS_VARIABLE, "").strip()
    return max(1, int(value)) if value else None


def _mtime(path: Path, missing: float | None = None) -> float:
    """`path`'s modification time; `missing` (default: now) when it cannot be read."""
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time() if missing is None else missing


def _runs_in(pid: int, folder: Path) -> bool:
    """Whether process `pid` is alive and a fine-tuning command of the job in `folder`."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return "deepfake_audio.training.finetune" in command and str(folder) in command


def _stop_group(pid: int, process: subprocess.Popen | None = None) -> None:
    """Stop a job's process and whatever it started (its own session): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return
            if process is None and not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)


def _last_line(log: Path) -> str | None:
    """The last non-empty line of a job's log (the command's error), without the traceback around it."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    lines = [line for line in lines if line]
    return lines[-1][:500] if lines else None
