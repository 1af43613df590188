"""Train a voice: an owner's takes (recorded, uploaded or imported) and the jobs that tune a voice on them.

`VoiceTraining` is the studio's service for the "Train a voice" tab and its API: a take
is read, checked (`training.takes.check_take`), embedded and kept in the owner's
library (`studio.takes.TakeSet`); ZIPs of takes and one long recording with its
transcript are cut into takes of the same store (`training.long_recording`). Starting
a job links the takes training uses into a job folder and queues it
(`studio.tuning_jobs.TuningJobs`); when it is done, the tuned voice is saved in the
owner's library like any other voice, with the time of the user's consent.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from deepfake_audio_core.audio_io import load_audio, read_audio, resample, write_audio
from deepfake_audio_core.errors import AudioError, DeepfakeAudioError, RequestError
from deepfake_audio_core.tuned import load_tuned_voice
from deepfake_audio.pipeline import SAMPLE_RATE, Pipeline
from deepfake_audio.studio.libraries import Libraries, Library
from deepfake_audio.studio.library import VoiceError
from deepfake_audio.studio.outputs import Outputs
from deepfake_audio.studio.takes import MIN_TAKES, Take, TakeProgress, TakeSet
from deepfake_audio.studio.tuning_jobs import MAX_MINUTES, TuningJob, TuningJobs
from deepfake_audio.studio.voices import check_consent
from deepfake_audio.training.long_recording import BoundaryAligner, split_long_recording
from deepfake_audio.training.takes_zip import unpack_takes_zip
from deepfake_audio.training.prompts import load_prompts
from deepfake_audio.training.takes import check_take
from deepfake_audio.watermark import provenance_tags

logger = logging.getLogger(__name__)

Report = Callable[[float, str], None]
MAX_TRANSCRIPT_CHARS = 100_000  # a 30-minute reading is about 25,000 characters


def library_folder(library: Library) -> Path:
    """The folder an owner's library lives in (its voices, results and training)."""
    return library.voices.root.parent


def _given(value) -> bool:
    return value is not None and str(value).strip() != ""


class VoiceTraining:
    """Takes and tuning jobs of every owner of one studio."""

    def __init__(self, pipeline: Pipeline, libraries: Libraries, outputs: Outputs, data_dir: Path):
        self.pipeline = pipeline
        self.libraries = libraries
        self.outputs = outputs
        self.jobs = TuningJobs(data_dir, pipeline, self._save_tuned)
        self.data_dir = self.jobs.data_dir
        self._prompts: list[str] | None = None
        self._served: dict[tuple[str, int], Path] = {}  # samples copied for the page, by (file, mtime)
        self._aligner: BoundaryAligner | bool | None = None  # loaded on the first long recording; False: cannot
        self._aligner_lock = threading.Lock()

    # Prompts and takes

    def prompts(self) -> list[str]:
        """The sentences to read, in order (`training.prompts`)."""
        if self._prompts is None:
            self._prompts = load_prompts()
        return self._prompts

    def prompt(self, index) -> tuple[int, str]:
        """(index, sentence) of a prompt; `RequestError` for an index outside the list."""
        try:
            number = int(float(index))
        except (TypeError, ValueError):
            raise RequestError(f"A prompt is chosen by its number (0 to {len(self.prompts()) - 1}), "
                               f"not {index!r}.") from None
        if not 0 <= number < len(self.prompts()):
            raise RequestError(f"There is no prompt {number}: they are numbered 0 to {len(self.prompts()) - 1}.")
        return number, self.prompts()[number]

    def take_set(self, name: str | None, owner: str | None = None) -> TakeSet:
        return TakeSet(library_folder(self.libraries.of(owner)), name)

    def takes(self, name: str | None, owner: str | None = None) -> tuple[list[Take], TakeProgress]:
        """The voice's takes (outliers marked) and how far the recording has come."""
        store = self.take_set(name, owner)
        takes = store.list()
        return takes, store.progress(len(self.prompts()), takes)

    def add_take(self, name: str | None, recording, prompt=None, *, text: str | None = None,
                 owner: str | None = None, source: str = "recording") -> Take:
        """Check a recording of prompt `prompt` (or of `text`, for a take without a prompt) and keep it
        as a take of the voice `name`; a second take of a prompt replaces the first (redo)."""
        store = self.take_set(name, owner)
        if not _given(recording):
            raise AudioError("No take to add: record the sentence (or upload a recording of it) first.")
        if _given(prompt):
            prompt, text = self.prompt(prompt)
        else:
            prompt, text = None, " ".join(str(text or "").split())
            if not text:
                raise RequestError("A take without a prompt needs the text that was read.")
        wav, sample_rate = read_audio(recording)
        return self._keep(store, wav, sample_rate, text, prompt, source)

    def _keep(self, store: TakeSet, wav: np.ndarray, sample_rate: int, text: str, prompt: int | None,
              source: str) -> Take:
        """Check, resample, embed and store one take."""
        check = check_take(wav, sample_rate, text)
        wav16 = resample(wav, sample_rate, SAMPLE_RATE)
        try:
            embedding = self.pipeline.embed(wav16, SAMPLE_RATE) if check.speech_seconds > 0 else None
        except AudioError:  # too short or silent to embed: the check says so already
            embedding = None
        return store.add(wav16, text, check, prompt=prompt, source=source, embedding=embedding)

    def keep_take(self, name: str | None, prompt, owner: str | None = None) -> Take | None:
        """Keep the take of `prompt` in training even though it is flagged (a good take is used anyway)."""
        store = self.take_set(name, owner)
        take = store.take_of_prompt(self.prompt(prompt)[0])
        if take is None:
            return None
        return store.keep(take.number) if take.flagged and not take.kept else take

    def keep_take_number(self, name: str | None, number, owner: str | None = None) -> Take:
        """Keep take `number` (as the takes table numbers them) in training even though it is flagged."""
        return self.take_set(name, owner).keep(_number(number))

    def redo_take(self, name: str | None, prompt, owner: str | None = None) -> None:
        """Forget the take of `prompt`, to record it again."""
        store = self.take_set(name, owner)
        take = store.take_of_prompt(self.prompt(prompt)[0])
        if take is not None:
            store.remove(take.number)

    def remove_take(self, name: str | None, number, owner: str | None = None) -> Take:
        return self.take_set(name, owner).remove(_number(number))

    def skip_prompt(self, name: str | None, prompt, owner: str | None = None) -> None:
        """Pass over a prompt (its take, if any, goes)."""
        self.take_set(name, owner).skip(self.prompt(prompt)[0])

    def discard_takes(self, name: str | None, owner: str | None = None) -> None:
        """Delete every take of the voice; not while one of its jobs waits or runs."""
        store = self.take_set(name, owner)
        active = [j for j in self.jobs.jobs(store.library_folder) if j["state"] in ("queued", "running")
                  and j["name"].casefold() == store.name.casefold()]
        if active:
            raise RequestError(f"{store.name!r} is being trained from these takes: cancel the job first.")
        store.discard()

    # Imports

    def import_zip(self, name: str | None, zip_file, owner: str | None = None, report: Report | None = None
                   ) -> tuple[list[Take], list[str]]:
        """Takes from a ZIP of audio files, each with a .txt of what was read (`training.long_recording`).
        Returns the takes kept and a sentence for each file left out."""
        store = self.take_set(name, owner)
        if not _given(zip_file):
            raise RequestError("Upload a ZIP of recordings, each with a .txt file of what was read.")
        skipped: list[str] = []
        with tempfile.TemporaryDirectory(prefix="takes-zip-") as unpacked:
            files = unpack_takes_zip(zip_file, Path(unpacked), warn=skipped.append)
            pieces = ((f.name, lambda f=f: read_audio(f), f.with_suffix(".txt").read_text(encoding="utf-8").strip())
                      for f in files)
            taken = self._keep_all(store, pieces, len(files), "zip", skipped, report)
        return taken, skipped

    def import_long(self, name: str | None, recording, transcript: str | None, owner: str | None = None,
                    report: Report | None = None) -> tuple[list[Take], list[str]]:
        """Takes from one long recording and the text read in it, cut at its pauses. Returns the
        takes kept and a sentence for each piece left out."""
        store = self.take_set(name, owner)
        if not _given(recording):
            raise AudioError("Upload the long recording to cut into takes.")
        transcript = " ".join(str(transcript or "").split())
        if not transcript:
            raise RequestError("Paste the transcript of the long recording: every word that was read, in order.")
        if len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise RequestError(f"The transcript is {len(transcript):,} characters long; at most "
                               f"{MAX_TRANSCRIPT_CHARS:,} are taken.")
        _report(report, 0.0, "Cutting the recording at its pauses")
        wav, sample_rate = read_audio(recording)
        segments = split_long_recording(wav, sample_rate, transcript, aligner=self.aligner())
        pieces = ((f"piece {k}", lambda s=s: (s.wav, s.sample_rate), s.text) for k, s in enumerate(segments, 1))
        skipped: list[str] = []
        return self._keep_all(store, pieces, len(segments), "long recording", skipped, report), skipped

    def aligner(self) -> BoundaryAligner | None:
        """The shipped starter's aligner, which places the cuts of a long recording's transcript (loaded
        once); None where it cannot load (the words are then shared out by speaking rate alone)."""
        with self._aligner_lock:
            if self._aligner is None:
                try:
                    self._aligner = BoundaryAligner()
                except (DeepfakeAudioError, OSError) as exc:
                    logger.warning("Long recordings are cut without the aligner: %s", exc)
                    self._aligner = False
            return self._aligner or None

    def _keep_all(self, store: TakeSet, pieces, count: int, source: str, skipped: list[str],
                  report: Report | None) -> list[Take]:
        """Keep each (label, audio loader, text) piece as a take; a piece that cannot be one is skipped and
        said why (a limit of the whole set stops the import)."""
        taken = []
        for k, (label, audio, text) in enumerate(pieces):
            _report(report, k / max(count, 1), f"Checking take {k + 1} of {count}")
            try:
                wav, sample_rate = audio()
                taken.append(self._keep(store, wav, sample_rate, text, None, source))
            except AudioError as exc:
                skipped.append(f"{label}: {exc}")
        return taken

    # Jobs

    def start(self, name: str | None, consent=False, minutes=20, owner: str | None = None,
              steps: int | None = None, other_language: bool = False) -> dict:
        """Queue a job that tunes the voice `name` on its takes for `minutes` (needs `consent`).
        `other_language`: the takes are not in English, so only the voice's colour trains (takes
        written in other alphabets are found without it)."""
        store = self.take_set(name, owner)
        check_consent(consent)
        minutes = _minutes(minutes)
        folder = store.library_folder
        used = [t for t in store.list() if t.used]
        if len(used) < MIN_TAKES:
            raise RequestError(f"{store.name!r} has {len(used)} usable takes; record at least {MIN_TAKES} (even 10 s "
                               "of speech bring the voice closer; about 5 minutes also make its words clearer).")
        try:
            existing = self.libraries.of(owner).voices.get(store.name)
        except VoiceError:
            existing = None
        if existing is not None and existing.tuned is None:
            raise VoiceError(f"A saved voice called {existing.name!r} was not made by training: give the trained "
                             "voice another name, or delete the saved one first.")
        job_folder = self.jobs.new_folder(folder)
        store.copy_used(job_folder / "takes")
        preview = next((t for t in used if not t.flagged), used[0])
        return self.jobs.submit(folder, store.name, job_folder / "takes", minutes=minutes, consent=time.time(),
                                takes=len(used), recorded_s=sum(t.seconds for t in used), preview=preview.wav.name,
                                steps=steps, takes_language="other" if other_language else "auto")

    def status(self, job_id, owner: str | None = None) -> dict:
        return self.jobs.status(library_folder(self.libraries.of(owner)), job_id)

    def latest(self, owner: str | None = None) -> dict | None:
        """The owner's job to show: the one waiting or running, else the newest."""
        jobs = self.jobs.jobs(library_folder(self.libraries.of(owner)))
        return next((j for j in jobs if j["state"] in ("queued", "running")), jobs[0] if jobs else None)

    def cancel(self, job_id, owner: str | None = None) -> dict:
        return self.jobs.cancel(library_folder(self.libraries.of(owner)), job_id)

    def sample_for_page(self, status: dict) -> Path | None:
        """A served copy of a job's latest sample (with provenance tags), made once per sample."""
        path = status.get("sample")
        if not path or not Path(path).is_file():
            return None
        key = (path, Path(path).stat().st_mtime_ns)
        served = self._served.get(key)
        if served is None or not served.is_file():
            wav, sample_rate = read_audio(path)
            served = write_audio(self.outputs.new_folder() / f"sample-step{status.get('step', 0)}.wav", wav,
                                 sample_rate, provenance_tags())
            self._served = {k: v for k, v in self._served.items() if v.is_file()} | {key: served}
        return served

    def _save_tuned(self, job: TuningJob, tuned: Path) -> str:
        """A finished job's voice in its library: new, or the tuned model of the trained voice of that name."""
        voices = Library.in_folder(self.data_dir / job.library).voices
        existing = next((v for v in voices.list() if v.name.casefold() == job.name.casefold()), None)
        load_tuned_voice(tuned)  # a damaged file never replaces a working one
        if existing is not None:
            if existing.tuned is None:  # saved from a recording while this voice trained: not this speaker's
                raise VoiceError(f"A voice called {existing.name!r} was saved from a recording while this one "
                                 "trained; rename or delete it, then train again.")
            return voices.set_tuned(existing.name, tuned).name
        preview_file = self.data_dir / job.folder / "takes" / job.preview
        try:
            preview = self.pipeline.embed(preview_file, return_wav=True)[1]
        except AudioError:
            preview = load_audio(preview_file, SAMPLE_RATE)
        return voices.save(job.name, load_tuned_voice(tuned).embedding, preview, SAMPLE_RATE, consent=job.consent,
                           tuned=tuned).name


def _minutes(value) -> float:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"The training time is a number of minutes, not {value!r}.") from None
    if not 0 < minutes <= MAX_MINUTES:
        raise RequestError(f"Train for more than 0 and at most {MAX_MINUTES} minutes, not {minutes:g}.")
    return minutes


def _number(value) -> int:
    try:
        return int(str(value).strip().lstrip("#"))
    except ValueError:
        raise RequestError(f"A take is picked by its number, not {value!r}.") from None


def _report(report: Report | None, fraction: float, what: str) -> None:
    if report is not None:
        report(fraction, what)
