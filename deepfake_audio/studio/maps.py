"""The voice map of an owner's library: saved voices, unsaved references and results on one plane.

Each result is joined to the voice it was cloned from: a saved voice, or else the
recording it came from (an "unsaved reference", one point per distinct recording).
The projection is `voice_map.project_2d`; the figure is `plots.voice_map_figure`.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from deepfake_audio.studio.libraries import Libraries, Library
from deepfake_audio.studio.plots import MapPoint, voice_map_figure
from deepfake_audio.studio.voice_map import project_2d

logger = logging.getLogger(__name__)

MAP_MAX_RESULTS = 40


class VoiceMaps:
    """Draws an owner's voice map; one projection at a time (UMAP's numba code compiles once)."""

    def __init__(self, libraries: Libraries):
        self.libraries = libraries
        self._lock = threading.Lock()

    def voice_map(self, owner: str | None = None) -> tuple[object, list[list]]:
        """The map figure of the owner's saved voices and recent results, and its rows (name, kind, similarity)."""
        points, embeddings, rows = _map_points(self.libraries.of(owner))
        with self._lock:  # UMAP's numba code is compiled once; let one thread do it
            projection = project_2d(np.array(embeddings) if embeddings else np.zeros((0, 256)))
        return voice_map_figure(points, projection.coords, projection.method), rows

    def warm_up(self) -> None:
        """Compile UMAP and load matplotlib's fonts before the first user opens the map."""
        rng = np.random.default_rng(0)
        points = np.abs(rng.standard_normal((6, 256)))
        with self._lock:
            project_2d(points / np.linalg.norm(points, axis=1, keepdims=True))
        voice_map_figure([], np.zeros((0, 2)), "pca")


def _map_points(library: Library) -> tuple[list[MapPoint], list[np.ndarray], list[list]]:
    """The map's points, their embeddings and the table's rows, for a library's voices and recent results."""
    voices = library.voices.list()
    points: list[MapPoint] = []
    embeddings: list[np.ndarray] = []
    index_of: dict[str, int] = {}
    for voice in voices:
        index_of[voice.name.casefold()] = len(points)
        points.append(MapPoint(voice.name, "voice", voice.name.casefold()))
        embeddings.append(voice.embedding)
    rows = [[voice.name, "saved voice", None] for voice in voices]
    n_references = 0
    for entry in library.results.list()[-MAP_MAX_RESULTS:]:
        key = entry.source.casefold() if entry.source else ""
        if key not in index_of or not key:
            # The result came from a recording that was never saved (or has been deleted since).
            key = f"ref:{entry.reference.tobytes().hex()[:32]}"
            if key not in index_of:
                n_references += 1
                label = f"{entry.source} (deleted)" if entry.source else f"recording {n_references}"
                index_of[key] = len(points)
                points.append(MapPoint(label, "reference", key))
                embeddings.append(entry.reference)
                rows.append([label, "unsaved reference", None])
        points.append(MapPoint(entry.label, "result", points[index_of[key]].group, link=index_of[key]))
        embeddings.append(entry.output)
        rows.append([entry.label, "generated result", round(entry.similarity, 3)])
    return points, embeddings, rows
