"""Comparing voices in words and on a map: the similarity reading and 2-D maps of embeddings.

Embeddings are the encoder's (256,) unit-norm float32 vectors; their similarity (a
cosine in [0, 1]) comes from `Pipeline.similarity`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Cosine thresholds for the plain-words reading. With the official GE2E encoder, two
# clean recordings of one speaker usually score above 0.8 and two different speakers
# of the same sex around 0.6-0.75; the bands follow that.
READINGS: tuple[tuple[float, str, str], ...] = (
    (0.85, "very close", "the encoder hears the same speaker."),
    (0.75, "close", "most listeners would take it for the same speaker."),
    (0.60, "somewhat similar", "a related voice, but not a convincing match."),
    (-1.0, "different", "the encoder hears another speaker."),
)
# Below this many voices UMAP has too few neighbours to be meaningful: PCA instead.
UMAP_MIN_POINTS = 4


def describe_similarity(score: float) -> str:
    """The score in plain words, e.g. 'Close (0.79): most listeners would take it for the same speaker.'"""
    for threshold, word, meaning in READINGS:
        if score >= threshold:
            return f"{word.capitalize()} ({score:.2f}): {meaning}"
    raise AssertionError("unreachable: the last threshold is below every cosine")


@dataclass(frozen=True)
class Projection:
    """2-D coordinates (n, 2) of n embeddings and the method that made them ("umap", "pca")."""

    coords: np.ndarray
    method: str


def project_2d(embeddings, seed: int = 0) -> Projection:
    """Map (n, 256) embeddings to the plane: UMAP (cosine metric) from 4 points, PCA below.

    UMAP follows the reference toolbox (neighbours = ceil(sqrt(n)), cosine metric)
    with a fixed seed so the same voices always give the same map.
    """
    points = np.asarray(embeddings, dtype=np.float64)
    n = len(points)
    if n == 0:
        return Projection(np.zeros((0, 2)), "none")
    points = points.reshape(n, -1)
    if n < UMAP_MIN_POINTS:
        return Projection(_pca_2d(points), "pca")
    import warnings

    import umap  # slow to import (numba): only when a map is drawn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state; spectral init fallbacks
        reducer = umap.UMAP(n_neighbors=max(2, math.ceil(math.sqrt(n))), n_components=2, metric="cosine",
                            random_state=seed, init="spectral" if n > 10 else "random")
        coords = reducer.fit_transform(points)
    return Projection(np.asarray(coords, dtype=np.float64), "umap")


def _pca_2d(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    if len(points) == 1 or not np.any(centred):
        return np.zeros((len(points), 2))
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = u[:, :2] * s[:2]
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords
