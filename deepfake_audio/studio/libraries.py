"""Whose saved voices and results a request sees: its owner's library, or the single-user one.

A private studio keeps one library per owner under `owners.owner_folder`; a single-user
install keeps one library in the data folder itself. `Libraries.repair` cleans up every
library after a crash.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from deepfake_audio.studio import owners
from deepfake_audio.studio.library import HistoryLog, ResultLog, VoiceLibrary, repair_library

logger = logging.getLogger(__name__)

# What a folder holds when it is a library (any of them is enough to repair it).
LIBRARY_PARTS = ("voices", "results.json", "history")


@dataclass(frozen=True)
class Library:
    """One owner's saved voices, results log (voice map) and history (recent files)."""

    voices: VoiceLibrary
    results: ResultLog
    history: HistoryLog

    @classmethod
    def in_folder(cls, folder: Path) -> "Library":
        """The library whose parts live in `folder`."""
        return cls(VoiceLibrary(folder / "voices"), ResultLog(folder / "results.json"), HistoryLog(folder / "history"))


class Libraries:
    """The libraries under one data folder: the single-user one, and one per owner when `private`."""

    def __init__(self, data_dir: Path, private: bool):
        self.data_dir = data_dir
        self.private = private
        self.shared = Library.in_folder(data_dir)  # the single-user library
        self._owned: dict[str, Library] = {}
        self._lock = threading.Lock()

    def of(self, owner: str | None = None) -> Library:
        """The saved voices and results a request may see: its owner's, or the single-user ones."""
        if not self.private:
            return self.shared
        folder = owners.owner_folder(self.data_dir, owners.require_owner(owner))
        with self._lock:
            if folder.name not in self._owned:
                self._owned[folder.name] = Library.in_folder(folder)
            return self._owned[folder.name]

    def repair(self) -> dict[str, list[str]]:
        """Clean up after a crash (see `library.repair_library`) in the single-user library and
        every owner's; logs and returns what was repaired, by folder."""
        repaired = {}
        for folder, library in self._every_library():
            done = repair_library(library.voices, library.results, library.history)
            if done:
                repaired[str(folder)] = done
                for line in done:
                    logger.warning("library %s: %s", folder, line)
        if not repaired:
            logger.info("libraries in %s are consistent", self.data_dir)
        return repaired

    def _every_library(self) -> list[tuple[Path, Library]]:
        """(folder, library) of the single-user library and of every owner folder that holds one."""
        found = [(self.data_dir, self.shared)]
        owners_root = self.data_dir / owners.OWNERS_FOLDER
        if owners_root.is_dir():
            for folder in sorted(p for p in owners_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if any((folder / part).exists() for part in LIBRARY_PARTS):
                    found.append((folder, Library.in_folder(folder)))
        return found
