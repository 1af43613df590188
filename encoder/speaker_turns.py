"""The main speaker of a reference that holds two voices.

A reference clip cut from an interview, a call or a video often has a second voice in it: the
interviewer's question, a reply. The speaker embedding is the mean of the encoder's partial
embeddings (1.6 s windows every 0.8 s), so it then lies between the two voices, and the pitch
measured over the whole clip mixes theirs (a man's question in a woman's clip pulls the median
down). A clone from it sounds like neither.

`main_speaker` splits the partials into two groups (2-means on the unit sphere) and, where the
groups are two voices, returns the larger one's embedding and the samples where only it speaks.
Thresholds, measured with the official encoder (bench/RESULTS.md, "A reference with two voices"):
on clips of one voice, 7 to 30 s, the two groups' centroids lie at cosine 0.87-0.96 (flite,
festival and espeak-ng voices, festival's Russian speaker `nsh` over his whole session, with
noise and reverberation); on two voices taking turns 0.51-0.79. A voice whose sound changes
part-way through (a microphone moved away, a telephone band) reads as two as well (0.71-0.73),
which is why what the caller is told names both causes. Each group must also be tighter than the
gap between them (its windows' mean cosine to its centroid at least MIN_GAP above the centroids'
cosine: one voice -0.07 to +0.02, two voices +0.13 to +0.29) and coherent in itself (0.88-0.93
here), so that an encoder whose windows scatter (an untrained or a different one) does not split
every reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoder.hparams import hparams as hp

MIN_PARTIALS = 8  # about 7 s of speech: fewer windows cannot tell two voices from the spread of one
TWO_VOICES_BELOW = 0.80  # cosine of the two groups' centroids under which they are two voices
MIN_SHARE = 0.2  # a smaller group is a laugh, a cough or a turn too short to matter
MIN_GAP = 0.1  # each group's coherence (mean cosine to its centroid) above the centroids' cosine ...
MIN_COHERENCE = 0.8  # ... and at least this (the official encoder: 0.88-0.93 for one voice's windows)
KMEANS_ITERATIONS = 20
MIN_KEPT_SECONDS = 1.0  # the main speaker's own audio, where no window of the other reaches it


@dataclass(frozen=True)
class MainSpeaker:
    """The larger of two voices in a reference.

    `embedding` (256,) unit norm: mean of its partial embeddings; `keep` (samples,) bool: the
    samples its windows cover and the other voice's do not (where its pitch is measured);
    `share`: its fraction of the windows; `similarity`: cosine between the two voices' centroids.
    """

    embedding: np.ndarray
    keep: np.ndarray
    share: float
    similarity: float


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def two_groups(partials: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-means of (n, d) partial embeddings by cosine: (labels (n,) in {0, 1}, centroids (2, d) unit).

    Starts from the partial least like their mean and the one least like that (deterministic, and
    linear in n: a 20-minute reference has 1,500 partials)."""
    unit = _unit(np.asarray(partials, dtype=np.float64))
    first = int(np.argmin(unit @ _unit(unit.mean(axis=0))))
    second = int(np.argmin(unit @ unit[first]))
    centroids = unit[[first, second]]
    labels = np.argmax(unit @ centroids.T, axis=1)
    for _ in range(KMEANS_ITERATIONS):
        if labels.min() == labels.max():
            break
        centroids = _unit(np.stack([unit[labels == k].mean(axis=0) for k in (0, 1)]))
        new = np.argmax(unit @ centroids.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, centroids


def main_speaker(partials: np.ndarray, slices: list[slice], n_samples: int) -> MainSpeaker | None:
    """The main speaker of a reference whose (n, 256) `partials` (covering `slices` of its
    `n_samples` samples, as `Encoder.embed_utterance(..., return_partials=True)` gives them) hold
    two voices; None where they hold one (or are too few to tell)."""
    if len(partials) < MIN_PARTIALS:
        return None
    labels, centroids = two_groups(partials)
    counts = np.bincount(labels, minlength=2)
    main = int(np.argmax(counts))
    share = float(counts[main] / len(labels))
    similarity = float(centroids[0] @ centroids[1])
    if similarity >= TWO_VOICES_BELOW or 1.0 - share < MIN_SHARE:
        return None
    unit = _unit(np.asarray(partials, dtype=np.float64))
    coherence = min(float(np.mean(unit[labels == k] @ centroids[k])) for k in (0, 1))
    if coherence < max(similarity + MIN_GAP, MIN_COHERENCE):
        return None
    mean = np.mean(np.asarray(partials, dtype=np.float32)[labels == main], axis=0)
    embedding = (mean / np.linalg.norm(mean)).astype(np.float32)
    covered = np.zeros((2, n_samples), dtype=bool)
    for label, part in zip(labels, slices):
        covered[label, part.start:min(part.stop, n_samples)] = True
    keep = covered[main] & ~covered[1 - main]
    if keep.sum() < MIN_KEPT_SECONDS * hp.sampling_rate:  # turns too short for a window of one voice alone
        keep = covered[main]
    return MainSpeaker(embedding, keep, share, similarity)
