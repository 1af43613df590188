"""The files the page may serve: results, batch ZIPs and copies of library files.

They live in one temporary folder (`Outputs.folder`, the only studio folder Gradio may
serve), each in a folder of its own; files older than an hour are pruned, since Gradio
has served its own copy by then. Library folders are never served: a preview or a
history file is copied here first.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deepfake_audio_core.audio_io import OUTPUT_FORMATS, normalize_loudness, output_format, write_audio
from deepfake_audio_core.errors import RequestError
from deepfake_audio_core.requests import check_loudness
from deepfake_audio.pipeline import CloneResult
from deepfake_audio.watermark import provenance_tags

OUTPUT_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True)
class Export:
    """How a result is saved for download: file format and, optionally, a loudness target."""

    file_format: str = "wav"
    loudness: float | None = None  # LUFS; None keeps the 0.97 peak

    @classmethod
    def of(cls, file_format: str | None, loudness) -> "Export":
        """Checked user choices; `RequestError` for an unknown format or an unreasonable target."""
        fmt = (file_format or "wav").strip().lower().lstrip(".")
        if fmt not in OUTPUT_FORMATS:
            raise RequestError(f"Unknown file format {file_format!r}: choose {', '.join(OUTPUT_FORMATS)}.")
        return cls(fmt, check_loudness(loudness))

    @property
    def extension(self) -> str:
        return output_format(self.file_format)[3]

    def describe(self) -> str:
        """The file line of a clone's status (Markdown, starting a new paragraph)."""
        level = "" if self.loudness is None else f" at {self.loudness:g} LUFS"
        return f"\n\nFile: {self.file_format.upper()}{level}, watermarked, with provenance tags."


class Outputs:
    """The served output folder: a new subfolder per file, pruned after an hour."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="deepfake-audio-outputs-"))

    def new_folder(self) -> Path:
        """A fresh subfolder to put one output in."""
        return Path(tempfile.mkdtemp(dir=self.folder))

    def copy(self, path: Path, name: str | None = None) -> Path:
        """A copy of a library file among the served outputs (named `name`, else as the file)."""
        return Path(shutil.copyfile(path, self.new_folder() / (name or path.name)))

    def write_result(self, result: CloneResult, voice: str, seed: int, export: Export | None = None) -> Path:
        """The result as a file for download: in the chosen format, at the chosen loudness, with tags."""
        export = export or Export()
        self.prune()
        slug = "".join(c if c.isalnum() else "-" for c in voice.casefold()).strip("-")[:32] or "voice"
        wav = result.wav if export.loudness is None else normalize_loudness(result.wav, result.sample_rate,
                                                                            export.loudness)
        return write_audio(self.new_folder() / f"{slug}-seed{seed}{export.extension}", wav, result.sample_rate,
                           provenance_tags())

    def prune(self) -> None:
        """Drop generated files older than an hour (Gradio has served its own copy by then)."""
        cutoff = time.time() - OUTPUT_MAX_AGE_SECONDS
        for folder in self.folder.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass
