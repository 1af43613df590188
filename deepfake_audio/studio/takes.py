"""An owner's recorded takes of a voice being trained, kept in their library as they are made.

A take is one prompt read aloud (or one piece of an imported ZIP or long recording). It
is checked as it comes (`training.takes.check_take`: silence, clipping, level, noise,
length, words) and written at once, so a closed tab loses nothing. Layout, under the
owner's library folder (the data folder, or `owners/<hash>/` where libraries are private):

    training/<voice slug>-<hash>/meta.json   {"name": str, "created": unix s, "skipped": [prompt, ...]}
    training/<voice slug>-<hash>/takes/NNN.wav   16-bit 16 kHz mono
    training/<voice slug>-<hash>/takes/NNN.txt   what was read
    training/<voice slug>-<hash>/takes/NNN.npy   (256,) float32 speaker embedding (absent when none could be made)
    training/<voice slug>-<hash>/takes/NNN.json  {"text", "prompt": index or null, "source", "added", "seconds",
                                                  "problems": [...], "note", "kept": bool}

A take's .json is written last: a take without one is unfinished and never listed. A
flagged take (a problem, or a voice unlike the rest: `training.takes.speaker_outliers`)
is left out of training unless the user keeps it anyway.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_io import write_wav
from deepfake_audio_core.errors import AudioError
from deepfake_audio.pipeline import SAMPLE_RATE
from deepfake_audio.studio.library import FolderLock, VoiceError, clean_name
from deepfake_audio.training.prompts import PROMPT_TARGET_MINUTES
from deepfake_audio.training.takes import speaker_outliers

TRAINING_FOLDER = "training"  # in the owner's library folder
MAX_TAKES = 400  # more than the prompt list: a ZIP or long recording may bring more
MAX_TAKE_SECONDS = 30.0  # one take; a longer recording is imported as a long recording (cut into takes)
MAX_SET_BYTES = 200 * 1024 * 1024  # a voice's takes together: about 100 minutes at 16 kHz
MAX_SETS = 5  # voices being recorded at once by one owner (each up to MAX_SET_BYTES on disk)
MIN_TAKES = 3  # fewer cannot be trained on (and the speaker check needs three)
LEAST_MINUTES = 10 / 60  # the least recorded speech measured (3-5 takes, 9.5-10.4 s): it brought most of the likeness
HELPFUL_MINUTES = PROMPT_TARGET_MINUTES  # what fine-tuning was measured with: about what helps most
SOURCES = ("recording", "zip", "long recording")  # a take read from a prompt (microphone or file), or imported


@dataclass(frozen=True)
class Take:
    """One take: its number, what was read, the check's verdict and whether training uses it."""

    number: int
    text: str
    prompt: int | None  # index in the prompt list; None for an imported take
    source: str  # one of SOURCES
    seconds: float
    problems: tuple[str, ...]  # `training.takes.PROBLEMS` codes, most important first
    note: str  # the check's sentence for the user
    kept: bool  # the user keeps it even though it is flagged
    wav: Path
    outlier: bool = False  # sounds like another speaker than the set's other takes

    @property
    def flagged(self) -> bool:
        return bool(self.problems) or self.outlier

    @property
    def used(self) -> bool:
        """Whether training uses it: a good take, or a flagged one the user kept."""
        return not self.flagged or self.kept

    @property
    def verdict(self) -> str:
        """In a few words, for the takes table."""
        if not self.flagged:
            return "good"
        what = ", ".join(self.problems + (("another voice?",) if self.outlier else ()))
        return f"{what}: kept anyway" if self.kept else f"{what}: left out"


@dataclass(frozen=True)
class TakeProgress:
    """How far a voice's recording has come."""

    used: int  # takes training will use
    seconds: float  # their length
    left_out: int  # flagged takes not kept
    total: int
    next_prompt: int | None  # the first prompt neither recorded nor skipped; None when all are

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0


def set_folder(library_folder: Path, name: str) -> Path:
    """The folder of a voice's takes: a slug for people, a hash of the name so two names never share one."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:32] or "voice"
    digest = hashlib.sha256(name.casefold().encode("utf-8")).hexdigest()[:8]
    return Path(library_folder) / TRAINING_FOLDER / f"{slug}-{digest}"


class TakeSet:
    """The takes of one voice in one library; safe across threads and processes."""

    def __init__(self, library_folder: Path, name: str):
        self.name = clean_name(name)
        self.library_folder = Path(library_folder)
        self.folder = set_folder(self.library_folder, self.name)
        self.takes_dir = self.folder / "takes"
        self._lock = FolderLock(self.folder / ".lock")

    # Reading

    def list(self) -> list[Take]:
        """Every finished take by number, speaker outliers marked (`training.takes.speaker_outliers`)."""
        if not self.takes_dir.is_dir():
            return []
        with self._lock:
            takes = self._read_all()
            embeddings = [(k, self._embedding(t)) for k, t in enumerate(takes)]
            embeddings = [(k, e) for k, e in embeddings if e is not None]
        if len(embeddings) >= MIN_TAKES:
            odd = speaker_outliers(np.stack([e for _, e in embeddings]))
            marked = {embeddings[i][0] for i in odd}
            takes = [Take(**{**t.__dict__, "outlier": k in marked}) for k, t in enumerate(takes)]
        return takes

    def progress(self, prompts: int, takes: list[Take] | None = None) -> TakeProgress:
        """Takes, minutes and the next prompt to read out of `prompts`."""
        takes = self.list() if takes is None else takes
        used = [t for t in takes if t.used]
        done = {t.prompt for t in takes if t.prompt is not None} | set(self._meta().get("skipped", []))
        following = next((k for k in range(prompts) if k not in done), None)
        return TakeProgress(len(used), round(sum(t.seconds for t in used), 2), len(takes) - len(used), len(takes),
                            following)

    def take_of_prompt(self, prompt: int) -> Take | None:
        return next((t for t in self.list() if t.prompt == prompt), None)

    def get(self, number: int) -> Take:
        take = next((t for t in self.list() if t.number == int(number)), None)
        if take is None:
            raise VoiceError(f"{self.name!r} has no take {number}; it may have been redone or removed.")
        return take

    # Changing

    def add(self, wav: np.ndarray, text: str, check, *, prompt: int | None = None, source: str = "recording",
            embedding: np.ndarray | None = None) -> Take:
        """Keep a take: `wav` (samples,) float at 16 kHz, what was read, its `training.takes.TakeCheck`,
        and its speaker embedding (None when none could be made). A take of a prompt that
        already has one replaces it (a redo). Raises `VoiceError` past a limit."""
        seconds = len(wav) / SAMPLE_RATE
        if seconds > MAX_TAKE_SECONDS:
            raise AudioError(f"This take is {seconds:.0f} s long; a take holds one sentence, at most "
                             f"{MAX_TAKE_SECONDS:.0f} s. Import a longer recording with its transcript instead.")
        with self._lock:
            self._create()
            for unfinished in self.takes_dir.glob(".part-*"):  # what a crash left (no writer holds the lock)
                unfinished.unlink(missing_ok=True)
            takes = self._read_all()
            old = next((t for t in takes if prompt is not None and t.prompt == prompt), None)
            if old is None and len(takes) >= MAX_TAKES:
                raise VoiceError(f"{self.name!r} already has {MAX_TAKES} takes, the most a voice keeps: remove "
                                 "some, or start training with these.")
            if self._bytes() + 2 * len(wav) + 4096 > MAX_SET_BYTES:
                raise VoiceError(f"The takes of {self.name!r} fill their {MAX_SET_BYTES // 2**20} MB: remove some "
                                 "(the longest or the flagged ones) before adding more.")
            number = old.number if old else max((t.number for t in takes), default=0) + 1
            record = {"text": " ".join(text.split()), "prompt": prompt, "source": source, "added": time.time(),
                      "seconds": round(seconds, 3), "problems": list(check.problems), "note": check.note,
                      "kept": False}
            self._write(number, wav, record, embedding)
            if prompt is not None:
                self._unskip(prompt)
            return self._read(self.takes_dir / f"{number:03d}.json")

    def keep(self, number: int) -> Take:
        """Use a flagged take in training anyway."""
        with self._lock:
            path = self.takes_dir / f"{int(number):03d}.json"
            self.get(number)
            record = json.loads(path.read_text(encoding="utf-8"))
            record["kept"] = True
            _write_json(path, record)
        return self.get(number)

    def remove(self, number: int) -> Take:
        """Delete one take (its .json first, so a crash leaves an unfinished take, never a listed one without audio)."""
        with self._lock:
            take = self.get(number)
            for suffix in (".json", ".wav", ".txt", ".npy"):
                (self.takes_dir / f"{take.number:03d}{suffix}").unlink(missing_ok=True)
            return take

    def skip(self, prompt: int) -> None:
        """Pass over a prompt: its take, if any, goes, and it is not offered again."""
        with self._lock:
            self._create()
            take = self.take_of_prompt(prompt)
            if take is not None:
                self.remove(take.number)
            meta = self._meta()
            meta["skipped"] = sorted(set(meta.get("skipped", [])) | {int(prompt)})
            _write_json(self.folder / "meta.json", meta)

    def discard(self) -> None:
        """Delete every take of the voice (the set's folder)."""
        with self._lock:
            if self.folder.is_dir():
                trash = self.folder.with_name(f".deleted-{self.folder.name}-{uuid.uuid4().hex[:6]}")
                os.replace(self.folder, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def copy_used(self, dest: Path) -> list[Take]:
        """Link (or copy) the takes training uses into `dest` as NNN.wav + NNN.txt; returns them."""
        dest.mkdir(parents=True, exist_ok=True)
        used = [t for t in self.list() if t.used]
        for take in used:
            for suffix in (".wav", ".txt"):
                source = take.wav.with_suffix(suffix)
                try:
                    os.link(source, dest / source.name)  # takes are replaced, never changed in place
                except OSError:
                    shutil.copyfile(source, dest / source.name)
        return used

    # Files

    def _create(self) -> None:
        self.takes_dir.mkdir(parents=True, exist_ok=True)
        if not (self.folder / "meta.json").is_file():
            owned = sum(1 for p in self.folder.parent.iterdir() if p.is_dir() and (p / "meta.json").is_file())
            if owned >= MAX_SETS:
                raise VoiceError(f"You are recording {MAX_SETS} voices already, the most at once: discard the takes "
                                 "of one you no longer need.")
            _write_json(self.folder / "meta.json", {"name": self.name, "created": time.time(), "skipped": []})

    def _meta(self) -> dict:
        try:
            return json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _unskip(self, prompt: int) -> None:
        meta = self._meta()
        if prompt in meta.get("skipped", []):
            meta["skipped"] = [p for p in meta["skipped"] if p != prompt]
            _write_json(self.folder / "meta.json", meta)

    def _bytes(self) -> int:
        return sum(p.stat().st_size for p in self.takes_dir.iterdir() if p.is_file())

    def _read_all(self) -> list[Take]:
        return [t for t in (self._read(p) for p in sorted(self.takes_dir.glob("[0-9]*.json"))) if t]

    def _write(self, number: int, wav: np.ndarray, record: dict, embedding: np.ndarray | None) -> None:
        """The take's files, each replaced whole; the .json last (it makes the take listed)."""
        stem = self.takes_dir / f"{number:03d}"
        (stem.with_suffix(".json")).unlink(missing_ok=True)  # a redo is unlisted until it is whole again
        staged = self.takes_dir / f".part-{uuid.uuid4().hex[:8]}"
        write_wav(staged.with_suffix(".wav"), wav, SAMPLE_RATE)
        os.replace(staged.with_suffix(".wav"), stem.with_suffix(".wav"))
        _atomic_text(stem.with_suffix(".txt"), record["text"] + "\n")
        if embedding is not None:
            np.save(staged.with_suffix(".npy"), np.asarray(embedding, dtype=np.float32))
            os.replace(staged.with_suffix(".npy"), stem.with_suffix(".npy"))
        else:
            stem.with_suffix(".npy").unlink(missing_ok=True)
        _write_json(stem.with_suffix(".json"), record)

    def _read(self, path: Path) -> Take | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            wav = path.with_suffix(".wav")
            if not wav.is_file():
                return None
            prompt = record.get("prompt")
            return Take(int(path.stem), str(record["text"]), None if prompt is None else int(prompt),
                        str(record.get("source", "recording")), float(record["seconds"]),
                        tuple(record.get("problems", ())), str(record.get("note", "")), bool(record.get("kept")),
                        wav)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _embedding(take: Take) -> np.ndarray | None:
        try:
            embedding = np.load(take.wav.with_suffix(".npy"), allow_pickle=False)
        except (OSError, ValueError):
            return None
        return embedding if embedding.shape == (256,) and np.all(np.isfinite(embedding)) else None


def _atomic_text(path: Path, text: str) -> None:
    staged = path.with_name(f".part-{uuid.uuid4().hex[:8]}{path.suffix}")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def _write_json(path: Path, data: dict) -> None:
    _atomic_text(path, json.dumps(data, ensure_ascii=False))
