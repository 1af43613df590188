"""Readers for speech corpora: which audio files there are, who speaks them, what they say.

Every reader returns a `Corpus`: a list of `Utterance`s plus the files it had to pass
over (with the reason, naming the file). Nothing is decoded here; unreadable audio is
found, skipped and counted by the preprocessing steps.

Supported layouts (`FORMATS`):

* ``librispeech``: ``<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`` with one
  ``<speaker>-<chapter>.trans.txt`` per chapter (the root may hold several subsets).
* ``libritts``: ``<speaker>/<chapter>/<id>.wav`` with ``<id>.normalized.txt`` (else
  ``<id>.original.txt``). Also LibriTTS-R.
* ``vctk``: ``wav48/<speaker>/<id>.wav`` (0.80) or ``wav48_silence_trimmed/<speaker>/
  <id>_mic1.flac`` (0.92), with ``txt/<speaker>/<id>.txt``.
* ``ljspeech``: ``metadata.csv`` (``id|text[|normalized text]``) and ``wavs/<id>.wav``;
  one speaker.
* ``voxceleb``: ``<speaker>/<video>/<n>.wav`` (optionally under ``wav/``); no
  transcripts, for the speaker encoder only.
* ``generic``: ``<speaker>/<utterance>.wav`` with ``<utterance>.txt`` beside it, or a
  flat folder of one speaker's ``<utterance>.wav`` + ``.txt``.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_audio_core.audio_io import SUPPORTED_EXTENSIONS
from deepfake_audio_core.errors import DeepfakeAudioError

FORMATS = ("librispeech", "libritts", "vctk", "ljspeech", "voxceleb", "generic")


class DatasetError(DeepfakeAudioError):
    """A corpus folder is missing, empty or not in the layout it was said to be in."""


@dataclass(frozen=True)
class Utterance:
    """One recording of a corpus."""

    audio: Path
    speaker: str  # unique across corpora: "<corpus folder>_<speaker>"
    id: str  # unique, filesystem-safe: "<speaker>_<utterance>"
    text: str | None = None  # None when the corpus has no transcript for it
    transcript: Path | None = None  # the file the text came from, or should have


@dataclass
class Corpus:
    """Utterances found in one or more corpus folders, and the files passed over."""

    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def __iadd__(self, other: "Corpus") -> "Corpus":
        self.utterances += other.utterances
        self.skipped += other.skipped
        return self

    @property
    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    def with_transcripts(self) -> "Corpus":
        """Only the utterances that have a transcript; the others are counted as skipped."""
        kept = [u for u in self.utterances if u.text is not None]
        missing = [(str(u.audio), f"no transcript (expected {u.transcript})" if u.transcript
                    else "no transcript") for u in self.utterances if u.text is None]
        return Corpus(kept, self.skipped + missing)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("_") or "x"


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUPPORTED_EXTENSIONS


def _read_text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return " ".join(text.split()) or None


def _utterance(root: Path, speaker: str, stem: str, audio: Path, text: str | None,
               transcript: Path | None) -> Utterance:
    spk = f"{_safe(root.name)}_{_safe(speaker)}"
    return Utterance(audio, spk, f"{spk}_{_safe(stem)}", text, transcript)


def read_librispeech(root: Path) -> Corpus:
    corpus = Corpus()
    for trans in sorted(root.rglob("*.trans.txt")):
        audio_files = {p.stem: p for p in trans.parent.iterdir() if _is_audio(p)}
        listed = set()
        for line in trans.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split(" ", 1)
            if not parts[0]:
                continue
            utt_id, text = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            listed.add(utt_id)
            audio = audio_files.get(utt_id)
            if audio is None:
                corpus.skipped.append((str(trans.parent / f"{utt_id}.flac"), f"listed in {trans.name} but missing"))
                continue
            corpus.utterances.append(_utterance(root, utt_id.split("-")[0], utt_id, audio, text or None, trans))
        for stem, audio in sorted(audio_files.items()):
            if stem not in listed:
                corpus.utterances.append(_utterance(root, stem.split("-")[0], stem, audio, None, trans))
    return corpus


def read_libritts(root: Path) -> Corpus:
    corpus = Corpus()
    for audio in sorted(p for p in root.rglob("*.wav") if p.is_file()):
        transcript = audio.with_name(audio.stem + ".normalized.txt")
        if not transcript.is_file() and audio.with_name(audio.stem + ".original.txt").is_file():
            transcript = audio.with_name(audio.stem + ".original.txt")
        text = _read_text(transcript) if transcript.is_file() else None
        corpus.utterances.append(_utterance(root, audio.parent.parent.name, audio.stem, audio, text, transcript))
    return corpus


def read_vctk(root: Path) -> Corpus:
    corpus = Corpus()
    audio_root = next((root / d for d in ("wav48_silence_trimmed", "wav48", "wav") if (root / d).is_dir()), None)
    if audio_root is None:
        raise DatasetError(f"{root} is not a VCTK folder: it has no wav48/ or wav48_silence_trimmed/ folder.")
    for audio in sorted(p for p in audio_root.rglob("*") if _is_audio(p)):
        stem = audio.stem
        if stem.endswith("_mic2"):  # the second microphone duplicates every utterance
            continue
        stem = stem.removesuffix("_mic1")
        transcript = root / "txt" / audio.parent.name / f"{stem}.txt"
        text = _read_text(transcript) if transcript.is_file() else None
        corpus.utterances.append(_utterance(root, audio.parent.name, stem, audio, text, transcript))
    return corpus


def read_ljspeech(root: Path) -> Corpus:
    corpus = Corpus()
    metadata = root / "metadata.csv"
    with metadata.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="|", quoting=csv.QUOTE_NONE):
            if not row or not row[0].strip():
                continue
            utt_id = row[0].strip()
            text = (row[2] if len(row) > 2 and row[2].strip() else row[1] if len(row) > 1 else "").strip()
            audio = next((p for p in (root / "wavs" / f"{utt_id}.wav", root / f"{utt_id}.wav") if p.is_file()), None)
            if audio is None:
                corpus.skipped.append((str(root / "wavs" / f"{utt_id}.wav"), "listed in metadata.csv but missing"))
                continue
            corpus.utterances.append(_utterance(root, root.name, utt_id, audio, text or None, metadata))
    return corpus


def read_voxceleb(root: Path) -> Corpus:
    corpus = Corpus()
    base = root / "wav" if (root / "wav").is_dir() else root
    for speaker_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for audio in sorted(speaker_dir.rglob("*")):
            if audio.is_file() and audio.suffix.lower() == ".m4a":
                corpus.skipped.append((str(audio), "AAC (.m4a) cannot be decoded; convert VoxCeleb2 to wav "
                                                   "first (ffmpeg -i x.m4a x.wav)"))
            elif _is_audio(audio):
                stem = "_".join(audio.relative_to(speaker_dir).with_suffix("").parts)
                corpus.utterances.append(_utterance(root, speaker_dir.name, stem, audio, None, None))
    return corpus


def read_generic(root: Path) -> Corpus:
    corpus = Corpus()

    def add(speaker: str, folder: Path, files) -> None:
        for audio in sorted(p for p in files if _is_audio(p)):
            transcript = audio.with_suffix(".txt")
            text = _read_text(transcript) if transcript.is_file() else None
            stem = "_".join(audio.relative_to(folder).with_suffix("").parts)
            corpus.utterances.append(_utterance(root, speaker, stem, audio, text, transcript))

    add(root.name, root, root.iterdir())  # a flat folder: one speaker
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        add(speaker_dir.name, speaker_dir, speaker_dir.rglob("*"))
    return corpus


READERS = {"librispeech": read_librispeech, "libritts": read_libritts, "vctk": read_vctk,
           "ljspeech": read_ljspeech, "voxceleb": read_voxceleb, "generic": read_generic}


def detect_format(root: Path) -> str:
    """Guess the layout of a corpus folder (VoxCeleb reads as `generic`, which also works)."""
    if (root / "metadata.csv").is_file():
        return "ljspeech"
    if (root / "txt").is_dir() and any((root / d).is_dir() for d in ("wav48", "wav48_silence_trimmed")):
        return "vctk"
    for pattern in ("*/*/*.trans.txt", "*/*/*/*.trans.txt"):
        if next(root.glob(pattern), None) is not None:
            return "librispeech"
    for pattern in ("*/*/*.normalized.txt", "*/*/*/*.normalized.txt"):
        if next(root.glob(pattern), None) is not None:
            return "libritts"
    return "generic"


def parse_corpus_spec(spec: str) -> tuple[str, Path]:
    """`FORMAT:PATH` or `PATH` (format `auto`) -> (format, path)."""
    name, sep, rest = spec.partition(":")
    if sep and name.lower() in FORMATS + ("auto",):
        return name.lower(), Path(rest)
    return "auto", Path(spec)


def read_corpus(root: Path | str, fmt: str = "auto") -> Corpus:
    """Read one corpus folder in layout `fmt` (one of `FORMATS`, or "auto" to detect it)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Corpus folder not found: {root}")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise DatasetError(f"Unknown corpus format {fmt!r}: use one of {', '.join(FORMATS)} or auto.")
    corpus = READERS[fmt](root)
    if not corpus.utterances:
        raise DatasetError(f"No audio found in {root} read as {fmt}: expected "
                           f"{_LAYOUT_HINTS[fmt]}. Pass FORMAT:PATH if the layout was guessed wrong.")
    return corpus


def read_corpora(specs: list[str], default_format: str = "auto") -> Corpus:
    """Read several `[FORMAT:]PATH` corpus folders into one `Corpus`."""
    corpus = Corpus()
    for spec in specs:
        fmt, path = parse_corpus_spec(spec)
        corpus += read_corpus(path, default_format if fmt == "auto" else fmt)
    ids = [u.id for u in corpus.utterances]
    if len(set(ids)) != len(ids):
        raise DatasetError("Two corpora give the same utterance ids (the same folder named twice?).")
    return corpus


_LAYOUT_HINTS = {
    "librispeech": "<speaker>/<chapter>/*.flac with <speaker>-<chapter>.trans.txt",
    "libritts": "<speaker>/<chapter>/<id>.wav with <id>.normalized.txt",
    "vctk": "wav48/<speaker>/*.wav (or wav48_silence_trimmed/) with txt/<speaker>/*.txt",
    "ljspeech": "metadata.csv and wavs/<id>.wav",
    "voxceleb": "<speaker>/<video>/<n>.wav",
    "generic": "<speaker>/<utterance>.wav with <utterance>.txt beside it",
}
