"""Many clones in one request: a text file or a CSV in, a ZIP of audio files and a manifest out.

* A text file (.txt): every paragraph (text between blank lines) becomes one file,
  `001.wav`, `002.wav`, ... in the request's voice: chapters of a long text.
* A CSV (.csv) with a header row `voice,text` and optionally `file`: every row becomes
  one file, spoken by the saved voice `voice` (empty, or `default`, for the request's own
  voice), named `file` (letters, digits, `-` and `_`; the format's extension is added)
  or by its row number.

The ZIP holds the files and `manifest.csv` (file, voice, seconds, seed, text). Each file is
a clone like any other: watermarked, with provenance tags. Every row is checked before the
first clone, so a mistake in row 90 costs nothing: the error names the row.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_io import encode_audio, normalize_loudness, output_format
from deepfake_audio_core.errors import DeepfakeAudioError, TextError
from deepfake_audio_core.tuned import TunedVoice
from deepfake_audio.pipeline import MAX_TEXT_CHARS, SAMPLE_RATE, Pipeline, Voice
from deepfake_audio.watermark import provenance_tags

MAX_ITEMS = 500
MAX_BATCH_BYTES = 2_000_000
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")


class BatchError(DeepfakeAudioError):
    """A batch file cannot be used: wrong kind, missing column, a bad row (named)."""


@dataclass(frozen=True)
class BatchItem:
    text: str
    voice: str | None  # a saved voice's name, or None for the request's own voice
    name: str  # file name without extension
    where: str  # where it came from ("row 5" of a CSV, "paragraph 3" of a text), for messages


def read_batch(path: Path | str, data: str | None = None) -> list[BatchItem]:
    """The items of a batch file (.txt or .csv); `data` gives its text instead of reading `path`."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".txt", ".csv"):
        raise BatchError(f"A batch is a .txt (one file per paragraph) or a .csv (voice,text[,file]), not "
                         f"{path.name!r}.")
    if data is None:
        if not path.is_file():
            raise BatchError(f"Batch file not found: {path.name}")
        if path.stat().st_size > MAX_BATCH_BYTES:
            raise BatchError(f"{path.name} is over {MAX_BATCH_BYTES // 1_000_000} MB: split it.")
        try:
            data = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise BatchError(f"{path.name} is not UTF-8 text.") from None
    items = _paragraphs(data) if kind == ".txt" else _rows(data, path.name)
    if not items:
        raise BatchError(f"{path.name} has nothing to say: no paragraph or row with text.")
    if len(items) > MAX_ITEMS:
        raise BatchError(f"{path.name} has {len(items)} items; a batch takes at most {MAX_ITEMS}.")
    return items


def _paragraphs(data: str) -> list[BatchItem]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", data) if p.strip()]
    return [BatchItem(p, None, f"{k:03d}", f"paragraph {k}") for k, p in enumerate(paragraphs, start=1)]


def _rows(data: str, name: str) -> list[BatchItem]:
    reader = csv.DictReader(io.StringIO(data))
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    missing = [c for c in ("voice", "text") if c not in columns]
    if missing:
        raise BatchError(f"{name} needs a header row with the columns voice and text (and optionally file); "
                         f"missing: {', '.join(missing)} (found: {', '.join(columns) or 'no header'}).")
    items, names = [], set()
    for number, row in enumerate(_checked_rows(reader, name), start=2):  # row 1 is the header
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if not row.get("text"):
            raise BatchError(f"{name}, row {number}: the text is empty.")
        voice = row.get("voice") or None
        voice = None if voice is not None and voice.casefold() == "default" else voice
        file_name = row.get("file") or f"{number - 1:03d}"
        stem, dot, extension = file_name.rpartition(".")
        if dot and stem and f".{extension.lower()}" in (".wav", ".flac", ".mp3", ".opus", ".ogg"):
            file_name = stem  # the batch's format decides the extension
        if not _FILE_NAME.fullmatch(file_name):
            raise BatchError(f"{name}, row {number}: the file name {row.get('file')!r} may hold only letters, "
                             "digits, - and _ (up to 80).")
        if file_name.casefold() in names:
            raise BatchError(f"{name}, row {number}: the file name {file_name!r} is used twice.")
        names.add(file_name.casefold())
        items.append(BatchItem(row["text"], voice, file_name, f"row {number}"))
    return items


def _checked_rows(reader: csv.DictReader, name: str):
    """The reader's rows; a malformed row (a field over csv's size limit, a stray quote) becomes a
    `BatchError` that names it (row 1 is the header)."""
    rows = iter(reader)
    number = 2
    while True:
        try:
            yield next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise BatchError(f"{name}, row {number}: a field is longer than "
                                 f"{csv.field_size_limit():,} characters (a row's text may have at most "
                                 f"{MAX_TEXT_CHARS:,}).") from None
            raise BatchError(f"{name}, row {number}: not a valid CSV row ({exc}).") from None
        number += 1


def check_batch(items: Sequence[BatchItem], voices: Mapping[str, np.ndarray], has_own_voice: bool) -> None:
    """Every row's text and voice, before anything is made; the error names the row."""
    known = {name.casefold() for name in voices}
    for item in items:
        where = item.where
        if item.voice is not None and item.voice.casefold() not in known:
            listed = ", ".join(sorted(voices)) or "none saved yet"
            raise BatchError(f"{where}: unknown voice {item.voice!r} (saved voices: {listed}).")
        if item.voice is None and not has_own_voice:
            raise BatchError(f"{where} is in the request's own voice, but no reference recording or voice was "
                             "given.")
        try:
            Pipeline.prepare_script(item.text, list(voices))
        except TextError as exc:
            raise BatchError(f"{where}: {exc}") from None


def run_batch(pipe: Pipeline, items: Sequence[BatchItem], out: Path | str, *, embedding: Voice | None = None,
              voices: Mapping[str, Voice] | None = None, seed: int | None = None, pace: float = 1.0,
              vocoder: str = "auto", file_format: str = "wav", loudness: float | None = None,
              progress: Callable[[int, int], None] | None = None, pitch: float = 0.0) -> Path:
    """Clone every item into the ZIP `out`, with `manifest.csv`; `progress(done, total)` after each file.

    `embedding` is the request's own voice; `voices` ({name: embedding}) the saved ones; either may
    be a tuned voice (`core.tuned`) instead of an embedding.
    `pace` and `pitch` (semitones) apply to every item. The ZIP is written next to `out` and renamed into place at the end.
    """
    voices = dict(voices or {})
    check_batch(items, voices, embedding is not None)
    extension = output_format(file_format)[3]
    by_name = {name.casefold(): e for name, e in voices.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["file", "voice", "seconds", "seed", "text"])
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for k, item in enumerate(items):
                voice = embedding if item.voice is None else by_name[item.voice.casefold()]
                item_seed = None if seed is None else seed + k
                tuned = voice if isinstance(voice, TunedVoice) else None
                result = pipe.clone(text=item.text, embedding=None if tuned else voice, tuned=tuned, seed=item_seed,
                                    vocoder=vocoder, pace=pace, voices=voices, pitch=pitch)
                wav = result.wav if loudness is None else normalize_loudness(result.wav, SAMPLE_RATE, loudness)
                archive.writestr(item.name + extension, encode_audio(wav, SAMPLE_RATE, file_format,
                                                                      provenance_tags()))
                writer.writerow([item.name + extension, item.voice or "default", f"{result.duration:.2f}",
                                 "" if item_seed is None else item_seed, item.text])
                if progress is not None:
                    progress(k + 1, len(items))
            archive.writestr("manifest.csv", manifest.getvalue())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out
