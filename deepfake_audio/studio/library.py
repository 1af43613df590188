"""Saved voices and generated results, kept on disk under the studio's data folder.

Layout under an owner's folder (the data folder itself for a single-user studio,
`owners/<hash of the owner>/` for private libraries, see `Studio`):

    voices/<id>/meta.json       {"name": str, "created": unix seconds, "seconds": float,
                                 "consent": unix seconds when the user confirmed permission}
    voices/<id>/embedding.npy   (256,) float32 unit-norm speaker embedding: the normalised mean of its clips'
    voices/<id>/clips.npy       (clips, 256) float32: the embedding of each recording it was made from (1 to 10)
    voices/<id>/preview.wav     up to PREVIEW_SECONDS of the prepared reference, 16-bit 16 kHz
    results.json                the last MAX_RESULTS generated results (see `ResultLog`)

A voice is written into a hidden temporary folder and renamed into place, and the
results file, the history's index and its audio files are each replaced atomically, so a
crash never leaves half an entry. A result is numbered once, by the history (never a
number whose file exists), and recorded there before the voice map (`record_result`).
What a crash can leave (staging folders and files, a history file its index does not
list, an index entry without its file, a map entry after the history's last) is removed
at start-up by `repair_library`, which says what it repaired. An entry
that cannot be read is skipped (and logged), never deleted: a bad file must not cost
the user the rest of the library. Changes happen under a lock that holds for threads
and for other processes (`fcntl.flock` where it exists), so several studio processes can
share one data folder, as replicas behind a load balancer do, and lose nothing.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: threads of one process are still serialised
    fcntl = None

import numpy as np

from deepfake_audio_core.audio_io import write_wav
from deepfake_audio_core.errors import DeepfakeAudioError
from deepfake_audio_core.tuned import MAX_BYTES as TUNED_MAX_BYTES
from deepfake_audio.pipeline import check_embedding

logger = logging.getLogger(__name__)

PREVIEW_SECONDS = 8.0
TUNED_FILE = "tuned.pt"  # a trained voice's tuned model, in its folder (`core.tuned`)
MAX_CLIPS = 10
MAX_NAME_CHARS = 40
MAX_VOICES = 500
MAX_RESULTS = 200
# Letters (any script), digits, spaces and a little punctuation: safe in a file name and in the UI.
_NAME_RE = re.compile(r"^[\w][\w .,'()+-]*$")


class VoiceError(DeepfakeAudioError):
    """A voice-library request cannot be done: bad or duplicate name, unknown voice, full library."""


def clean_name(name: str | None) -> str:
    """A voice name with surrounding and repeated spaces removed; `VoiceError` when unusable."""
    cleaned = " ".join(str(name or "").split())
    if not cleaned:
        raise VoiceError("Give the voice a name before saving it.")
    if len(cleaned) > MAX_NAME_CHARS:
        raise VoiceError(f"The voice name is {len(cleaned)} characters long; keep it to {MAX_NAME_CHARS}.")
    if not _NAME_RE.match(cleaned):
        raise VoiceError("Use letters, digits, spaces and . , ' ( ) + - in voice names, starting with a "
                         "letter or digit.")
    return cleaned


class FolderLock:
    """An exclusive, re-entrant lock over a folder for the threads of this process and other processes."""

    def __init__(self, path: Path):
        self.path = path
        self._thread = threading.RLock()
        self._depth = 0
        self._file = None

    def __enter__(self) -> "FolderLock":
        self._thread.acquire()
        if self._depth == 0 and fcntl is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self._thread.release()


@dataclass(frozen=True)
class SavedVoice:
    """A saved voice: its name, embedding and a short preview recording."""

    id: str
    name: str
    created: float  # unix seconds
    seconds: float  # length of the reference it was made from, after silence trimming
    embedding: np.ndarray  # (256,) float32
    preview: Path  # 16-bit 16 kHz WAV
    consent: float | None = None  # unix seconds when the user confirmed the speaker's permission
    clips: np.ndarray | None = None  # (clips, 256): each recording's embedding; None: made from one
    tuned: Path | None = None  # its tuned voice (`core.tuned`, TUNED_FILE) when it was trained; None: zero-shot

    @property
    def clip_embeddings(self) -> np.ndarray:
        return self.clips if self.clips is not None else self.embedding[None]


def _check_tuned_size(path: Path) -> None:
    size = Path(path).stat().st_size
    if size > TUNED_MAX_BYTES:
        raise VoiceError(f"The tuned model {Path(path).name} is {size / 2**20:.1f} MB; a voice keeps at most "
                         f"{TUNED_MAX_BYTES / 2**20:.0f} MB.")


def mean_embedding(clips: np.ndarray) -> np.ndarray:
    """A voice's embedding from its clips': their mean, normalised to unit length (as GE2E centroids are)."""
    mean = np.asarray(clips, dtype=np.float64).mean(axis=0)
    return (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)


class VoiceLibrary:
    """The saved voices in `root`, one folder each. Safe to use from several threads."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FolderLock(self.root / ".lock")

    def list(self) -> list[SavedVoice]:
        """Every readable voice, sorted by name (case-insensitive)."""
        with self._lock:
            voices = []
            for folder in sorted(self.root.iterdir()):
                if folder.name.startswith(".") or not folder.is_dir():
                    continue
                voice = self._read(folder)
                if voice is not None:
                    voices.append(voice)
            return sorted(voices, key=lambda v: v.name.casefold())

    def names(self) -> list[str]:
        return [voice.name for voice in self.list()]

    def get(self, name: str) -> SavedVoice:
        """The voice called `name` (case-insensitive); `VoiceError` when there is none."""
        wanted = " ".join(str(name or "").split()).casefold()
        for voice in self.list():
            if voice.name.casefold() == wanted:
                return voice
        raise VoiceError(f"There is no saved voice called {name!r}; it may have been deleted. "
                         "Pick another voice or save this one again.")

    def save(self, name: str, embedding, reference: np.ndarray, sample_rate: int,
             consent: float | None = None, clips=None, tuned: Path | None = None) -> SavedVoice:
        """Save a new voice: its embedding and the first seconds of `reference` (float, [-1, 1]).

        `clips` (clips, 256) are the embeddings of the recordings it was made from (1 to 10;
        `embedding` should be their normalised mean); without them the voice has one clip.
        `consent` records when the user confirmed they have the speaker's permission.
        `tuned` is a tuned voice file (`core.tuned`) to keep with it (copied in).
        Raises `VoiceError` for a bad or already used name, a bad embedding or a full library.
        """
        name = clean_name(name)
        embedding = check_embedding(embedding)
        clips = np.stack([check_embedding(c) for c in clips]) if clips is not None else embedding[None]
        if not 1 <= len(clips) <= MAX_CLIPS:
            raise VoiceError(f"A voice is made from 1 to {MAX_CLIPS} recordings, not {len(clips)}.")
        reference = np.asarray(reference, dtype=np.float32).reshape(-1)
        with self._lock:
            existing = self.list()
            if any(v.name.casefold() == name.casefold() for v in existing):
                raise VoiceError(f"A voice called {name!r} already exists: choose another name, or delete "
                                 "the saved one first.")
            if len(existing) >= MAX_VOICES:
                raise VoiceError(f"The library is full ({MAX_VOICES} voices): delete some voices first.")
            voice_id = f"{_slug(name)}-{uuid.uuid4().hex[:6]}"
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
            try:
                np.save(staging / "embedding.npy", embedding)
                np.save(staging / "clips.npy", clips.astype(np.float32))
                write_wav(staging / "preview.wav", reference[:int(PREVIEW_SECONDS * sample_rate)], sample_rate)
                if tuned is not None:
                    _check_tuned_size(tuned)
                    shutil.copyfile(tuned, staging / TUNED_FILE)
                meta = {"name": name, "created": time.time(), "seconds": round(len(reference) / sample_rate, 2),
                        "consent": consent}
                (staging / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
                os.replace(staging, self.root / voice_id)
            except OSError as exc:
                raise VoiceError(f"Could not save the voice: {exc.strerror or exc}.") from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            voice = self._read(self.root / voice_id)
            if voice is None:
                raise VoiceError(f"The voice {name!r} was written but cannot be read back.")
            return voice

    def add_clip(self, name: str, clip) -> SavedVoice:
        """Add one recording's embedding to the voice `name`; its embedding becomes the new mean."""
        clip = check_embedding(clip)
        with self._lock:
            voice = self.get(name)
            clips = voice.clip_embeddings
            if len(clips) >= MAX_CLIPS:
                raise VoiceError(f"{voice.name!r} is already made from {MAX_CLIPS} recordings, the most a voice takes.")
            clips = np.concatenate([clips, clip[None]]).astype(np.float32)
            folder = self.root / voice.id
            try:  # each file is replaced whole; the embedding last, so a crash leaves the old voice intact
                for file, array in (("clips.npy", clips), ("embedding.npy", mean_embedding(clips))):
                    staged = folder / f".{file}.{uuid.uuid4().hex[:6]}.npy"
                    np.save(staged, array)
                    os.replace(staged, folder / file)
            except OSError as exc:
                raise VoiceError(f"Could not add the recording to {voice.name!r}: {exc.strerror or exc}.") from None
            return self.get(name)

    def set_tuned(self, name: str, tuned: Path) -> SavedVoice:
        """Keep the tuned voice file `tuned` with the voice `name` (replacing an earlier one)."""
        _check_tuned_size(tuned)
        with self._lock:
            voice = self.get(name)
            folder = self.root / voice.id
            staged = folder / f".{TUNED_FILE}.{uuid.uuid4().hex[:6]}.npy"  # repair() removes it after a crash
            try:
                shutil.copyfile(tuned, staged)
                os.replace(staged, folder / TUNED_FILE)
            except OSError as exc:
                staged.unlink(missing_ok=True)
                raise VoiceError(f"Could not keep the tuned model of {voice.name!r}: {exc.strerror or exc}.") from None
            return self.get(name)

    def delete(self, name: str) -> SavedVoice:
        """Delete the voice called `name` (with its tuned model); returns it. `VoiceError` when there is none."""
        with self._lock:
            voice = self.get(name)
            trash = self.root / f".deleted-{voice.id}-{uuid.uuid4().hex[:6]}"
            try:
                os.replace(self.root / voice.id, trash)  # atomic: gone from the list at once
            except OSError as exc:
                raise VoiceError(f"Could not delete {voice.name!r}: {exc.strerror or exc}.") from None
            shutil.rmtree(trash, ignore_errors=True)
            return voice

    def repair(self) -> list[str]:
        """Remove what an interrupted save, change or delete left (hidden staging folders and
        files); returns what was removed."""
        repaired = []
        with self._lock:
            for path in sorted(self.root.iterdir()):
                if path.is_dir() and path.name.startswith((".new-", ".deleted-")):
                    shutil.rmtree(path, ignore_errors=True)
                    repaired.append(f"removed the unfinished {path.name}")
                elif path.is_dir() and not path.name.startswith("."):
                    for staged in path.glob(".*.npy"):
                        staged.unlink(missing_ok=True)
                        repaired.append(f"removed the unfinished {path.name}/{staged.name}")
        return repaired

    def _read(self, folder: Path) -> SavedVoice | None:
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            embedding = check_embedding(np.load(folder / "embedding.npy", allow_pickle=False))
            preview = folder / "preview.wav"
            if not preview.is_file():
                raise FileNotFoundError(preview)
            consent = meta.get("consent")
            clips = None
            if (folder / "clips.npy").is_file():
                clips = np.load(folder / "clips.npy", allow_pickle=False)
                clips = np.stack([check_embedding(c) for c in clips.reshape(-1, embedding.size)])
            tuned = folder / TUNED_FILE
            return SavedVoice(folder.name, clean_name(meta["name"]), float(meta.get("created", 0.0)),
                              float(meta.get("seconds", 0.0)), embedding, preview,
                              None if consent is None else float(consent), clips,
                              tuned if tuned.is_file() else None)
        except (OSError, ValueError, KeyError, TypeError, DeepfakeAudioError) as exc:
            logger.warning("Skipping the unreadable saved voice in %s: %s", folder, exc)
            return None


@dataclass(frozen=True)
class ResultEntry:
    """One generated result as the voice map needs it."""

    label: str  # e.g. "#12 Alice: Hello there."
    source: str  # saved voice name, or "" for an unsaved recording
    reference: np.ndarray  # (256,) embedding of the voice the clone was asked for
    output: np.ndarray  # (256,) embedding of the generated speech
    similarity: float
    created: float
    number: int = 0  # the result's number in its log (#1, #2, ...)


class ResultLog:
    """The last `limit` generated results, in a JSON file. Safe for threads and for processes
    sharing the file: each call reads the file under the lock, so no process works on a stale copy."""

    def __init__(self, path: Path | str, limit: int = MAX_RESULTS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self._lock = FolderLock(self.path.with_name(f".{self.path.name}.lock"))

    def list(self) -> list[ResultEntry]:
        with self._lock:
            return self._load()

    def next_number(self) -> int:
        with self._lock:
            return max((e.number for e in self._load()), default=0) + 1

    def add(self, text: str, source: str, reference, output, similarity: float,
            number: int | None = None) -> ResultEntry:
        """Record a result (as number `number`, default the next); the oldest are dropped beyond `limit`."""
        snippet = " ".join(text.split())
        snippet = snippet if len(snippet) <= 24 else snippet[:23] + "…"
        with self._lock:
            entries = self._load()
            if number is None:
                number = max((e.number for e in entries), default=0) + 1
            entry = ResultEntry(f"#{number} {source or 'recording'}: {snippet}", source, check_embedding(reference),
                                check_embedding(output), float(similarity), time.time(), number)
            self._write((entries + [entry])[-self.limit:])
            return entry

    def clear(self) -> None:
        with self._lock:
            self._write([])

    def repair(self, history_numbers: set[int]) -> list[str]:
        """Remove unfinished writes of the log, and entries recorded after the history's last
        result (a crash between the two cannot leave one, but logs from before could)."""
        repaired = []
        with self._lock:
            for staged in self.path.parent.glob(".results-*"):
                if staged.is_file():
                    staged.unlink(missing_ok=True)
                    repaired.append(f"removed the unfinished {staged.name}")
            entries = self._load()
            last = max(history_numbers, default=None)
            if last is not None:
                kept = [e for e in entries if e.number <= last]
                if len(kept) < len(entries):
                    dropped = ", ".join(f"#{e.number}" for e in entries if e.number > last)
                    repaired.append(f"removed voice-map entries without a result ({dropped})")
                    self._write(kept)
        return repaired

    def _load(self) -> list[ResultEntry]:
        if not self.path.is_file():
            return []
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
            return [ResultEntry(r["label"], r["source"], check_embedding(r["reference"]), check_embedding(r["output"]),
                                float(r["similarity"]), float(r["created"]), int(r.get("number", k + 1)))
                    for k, r in enumerate(rows)][-self.limit:]
        except (OSError, ValueError, KeyError, TypeError, DeepfakeAudioError) as exc:
            # Keep the unreadable file for inspection and start a new log beside it.
            logger.warning("Could not read the results log %s (%s); starting a new one", self.path, exc)
            try:
                os.replace(self.path, self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}"))
            except OSError:
                pass
            return []

    def _write(self, entries: list[ResultEntry]) -> None:
        rows = [{"label": e.label, "source": e.source, "reference": e.reference.tolist(), "output": e.output.tolist(),
                 "similarity": e.similarity, "created": e.created, "number": e.number} for e in entries]
        fd, tmp = tempfile.mkstemp(prefix=".results-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(rows, fh)
            os.replace(tmp, self.path)
        except OSError as exc:  # the log is a convenience: losing it must not fail the request
            logger.warning("Could not write the results log %s: %s", self.path, exc)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")
    return slug[:32] or "voice"


MAX_HISTORY = 20


@dataclass(frozen=True)
class HistoryEntry:
    """One of the owner's recent results, kept to replay and download."""

    number: int
    text: str
    voice: str  # saved voice name, or "recording"
    seed: int
    created: float  # unix seconds
    seconds: float  # duration of the audio
    file: Path  # the audio file as it was downloaded (its format, tags and watermark)


class HistoryLog:
    """The owner's last `limit` results (audio files and what made them) in a folder; safe across processes."""

    def __init__(self, root: Path | str, limit: int = MAX_HISTORY):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.limit = limit
        self._lock = FolderLock(self.root / ".lock")
        self._index = self.root / "history.json"

    def list(self) -> list[HistoryEntry]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._load()))

    def _numbered_files(self) -> dict[int, Path]:
        """The result files in the folder by number (`000012.wav` is #12), listed or not."""
        out = {}
        for path in self.root.iterdir():
            stem = path.stem
            if path.is_file() and stem.isdigit() and len(stem) == 6:
                out[int(stem)] = path
        return out

    def add(self, audio: Path, text: str, voice: str, seed: int, seconds: float,
            at_least: int = 1) -> HistoryEntry:
        """Keep a copy of `audio` as the next result (numbered at least `at_least`, and past every
        number listed or with a file, so a number is never reused)."""
        with self._lock:
            entries = self._load()
            used = [e.number for e in entries] + list(self._numbered_files())
            number = max(max(used, default=0) + 1, at_least)
            target = self.root / f"{number:06d}{audio.suffix.lower()}"
            staged = self.root / f".part-{uuid.uuid4().hex[:8]}{audio.suffix.lower()}"
            try:
                shutil.copyfile(audio, staged)
                os.replace(staged, target)
            except OSError as exc:  # history is a convenience: losing one entry must not fail the request
                staged.unlink(missing_ok=True)
                logger.warning("Could not keep %s in the history: %s", audio.name, exc)
                raise VoiceError(f"Could not keep the result in the history: {exc.strerror or exc}.") from None
            entry = HistoryEntry(number, " ".join(text.split()), voice, int(seed), time.time(), float(seconds), target)
            entries = (entries + [entry])
            for old in entries[:-self.limit]:
                old.file.unlink(missing_ok=True)
            self._write(entries[-self.limit:])
            return entry

    def numbers(self) -> set[int]:
        with self._lock:
            return {e.number for e in self._load()}

    def repair(self) -> list[str]:
        """Remove unfinished writes, files the index does not list, and index entries whose file
        is gone; returns what was repaired."""
        repaired = []
        with self._lock:
            for staged in list(self.root.glob(".history-*")) + list(self.root.glob(".part-*")):
                staged.unlink(missing_ok=True)
                repaired.append(f"removed the unfinished {staged.name}")
            try:
                rows = json.loads(self._index.read_text(encoding="utf-8"))
                listed = {Path(r["file"]).name for r in rows}
            except FileNotFoundError:
                rows, listed = [], set()
            except (OSError, ValueError, KeyError, TypeError):
                return repaired  # `_load` logs it and starts a new index; files stay for inspection
            entries = self._load()  # only those whose file exists
            if len(entries) < len(rows):
                missing = sorted({Path(r["file"]).name for r in rows} - {e.file.name for e in entries})
                repaired.append(f"removed history entries without a file ({', '.join(missing)})")
                self._write(entries)
            for number, path in sorted(self._numbered_files().items()):
                if path.name not in listed:
                    path.unlink(missing_ok=True)
                    repaired.append(f"removed {path.name}, which the history did not list")
        return repaired

    def get(self, number: int) -> HistoryEntry:
        for entry in self.list():
            if entry.number == int(number):
                return entry
        raise VoiceError(f"Result #{number} is no longer in the history (only the last {self.limit} are kept).")

    def _load(self) -> list[HistoryEntry]:
        try:
            rows = json.loads(self._index.read_text(encoding="utf-8"))
            return [HistoryEntry(int(r["number"]), r["text"], r["voice"], int(r["seed"]), float(r["created"]),
                                 float(r["seconds"]), self.root / Path(r["file"]).name)
                    for r in rows if (self.root / Path(r["file"]).name).is_file()]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Could not read the history %s (%s); starting a new one", self._index, exc)
            return []

    def _write(self, entries: list[HistoryEntry]) -> None:
        rows = [{"number": e.number, "text": e.text, "voice": e.voice, "seed": e.seed, "created": e.created,
                 "seconds": e.seconds, "file": e.file.name} for e in entries]
        fd, tmp = tempfile.mkstemp(prefix=".history-", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(rows, fh)
            os.replace(tmp, self._index)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def record_result(history: HistoryLog, results: ResultLog, audio: Path, text: str, source: str | None, seed: int,
                  seconds: float, reference=None, output=None, similarity: float | None = None
                  ) -> HistoryEntry | None:
    """Keep a clone's file in the history and, with its embeddings, in the voice map, under one
    number. `source` is the saved voice's name (None: a recording). The history comes
    first: a crash in between leaves a result without a map entry, never a map entry
    without its result. None if the history could not keep it (the result itself is
    there; it is logged)."""
    try:
        entry = history.add(audio, text, source or "recording", seed, seconds, at_least=results.next_number())
    except VoiceError as exc:
        logger.warning("%s", exc)
        return None
    if output is not None and similarity is not None:
        results.add(text, source or "", reference, output, similarity, number=entry.number)
    return entry


def repair_library(voices: VoiceLibrary, results: ResultLog, history: HistoryLog) -> list[str]:
    """Start-up check of one owner's library after a crash: see the module's docstring."""
    return voices.repair() + history.repair() + results.repair(history.numbers())
