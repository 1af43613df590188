"""Files of the preprocessing and training commands: atomic writes, JSON lines, metadata."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from deepfake_audio.training import TrainingError

METADATA = "metadata.jsonl"
JOURNAL = "journal.jsonl"
SKIPPED = "skipped.txt"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array)
    atomic_write(path, write)


def write_jsonl(path: Path, records: Iterable[Mapping]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                          for r in records), encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
    return records


def read_metadata(folder: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """The records of a preprocessed folder, with file entries resolved to absolute paths."""
    folder = Path(folder)
    path = folder / METADATA
    if not path.is_file():
        raise TrainingError(f"{folder} has no {METADATA}: run the preprocessing command for it first.")
    records = read_jsonl(path)
    if not records:
        raise TrainingError(f"{path} lists no utterances: the preprocessing kept nothing. {skipped_summary(folder)}")
    for record in records:
        for key in required:
            if key not in record:
                raise TrainingError(f"{path} has no '{key}' entries: it was made by another preprocessing step.")
        for key in ("frames", "mel", "audio", "embed"):
            if key in record:
                record[key] = str((folder / record[key]).resolve())
    return records


def skipped_summary(folder: Path, shown: int = 3) -> str:
    """Why the preprocessing of `folder` left files out, from its skipped.txt, in one or two
    sentences: the first `shown` files with their reasons, and how many more there are."""
    path = Path(folder) / SKIPPED
    lines = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip()] if path.is_file() else []
    if not lines:
        return f"No file was listed as skipped in {path}: was the input folder empty?"
    reasons = "; ".join(f"{Path(entry[0]).name}: {entry[1].rstrip('. ') if len(entry) > 1 else 'no reason given'}"
                        for entry in lines[:shown])
    more = f" (and {len(lines) - shown} more)" if len(lines) > shown else ""
    return f"{len(lines)} file(s) were skipped ({path}): {reasons}{more}."


def relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder)).as_posix()
