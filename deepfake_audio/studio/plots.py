"""Figures for the studio: mel spectrogram, embedding heatmaps and the voice map.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no
global state), so several requests can draw at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

# The studio's palette (also in static/manifest.json and the Gradio theme).
INK = "#1f2937"
MUTED = "#6b7280"
ACCENT = "#0f766e"
HEATMAP_CMAP = "viridis"
MEL_CMAP = "magma"
VOICE_COLOURS = ("#0f766e", "#b45309", "#7c3aed", "#be123c", "#1d4ed8", "#4d7c0f", "#a21caf", "#0e7490",
                 "#c2410c", "#475569")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    fig.patch.set_alpha(0.0)
    return fig


def _style(ax) -> None:
    ax.tick_params(colors=MUTED, labelsize=8)
    for spine in ax.spines.values():
        spine.set_color("#d1d5db")
    ax.title.set_color(INK)
    ax.xaxis.label.set_color(MUTED)
    ax.yaxis.label.set_color(MUTED)


def mel_figure(mels: Sequence[np.ndarray], frame_seconds: float = 0.0125, pause_seconds: float = 0.15) -> Figure:
    """The mel spectrograms (80, frames) of the sentences, side by side on one time axis.

    Sentences are separated by blank gaps as long as the pauses in the audio, so the
    time axis lines up with the player.
    """
    gap = max(1, round(pause_seconds / frame_seconds))
    pieces = []
    for k, mel in enumerate(mels):
        if k:
            pieces.append(np.full((mel.shape[0], gap), np.nan, dtype=np.float32))
        pieces.append(np.asarray(mel, dtype=np.float32))
    fig = _figure(8.0, 2.6)
    ax = fig.add_subplot()
    if not pieces:
        ax.set_axis_off()
        return fig
    joined = np.concatenate(pieces, axis=1)
    image = ax.imshow(joined, origin="lower", aspect="auto", cmap=MEL_CMAP, interpolation="nearest",
                      extent=(0.0, joined.shape[1] * frame_seconds, 0, joined.shape[0]))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("mel channel", fontsize=8)
    ax.set_title(f"Mel spectrogram ({len(mels)} sentence{'s' if len(mels) != 1 else ''})", fontsize=9)
    bar = fig.colorbar(image, ax=ax, pad=0.01, fraction=0.04)
    bar.ax.tick_params(labelsize=7, colors=MUTED)
    _style(ax)
    return fig


def embeddings_figure(reference: np.ndarray, output: np.ndarray | None = None) -> Figure:
    """The reference (and output) embeddings as 16 x 16 heatmaps on one colour scale."""
    panels = [("Reference voice", reference)] + ([("Generated speech", output)] if output is not None else [])
    vmax = max(float(np.max(e)) for _, e in panels) or 1.0
    fig = _figure(2.6 * len(panels) + 0.6, 2.9)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, (title, embedding) in zip(axes, panels):
        side = math.isqrt(len(embedding))
        grid = np.asarray(embedding, dtype=np.float32)[:side * side].reshape(side, side)
        image = ax.imshow(grid, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        _style(ax)
    bar = fig.colorbar(image, ax=list(axes), pad=0.02, fraction=0.05)
    bar.ax.tick_params(labelsize=7, colors=MUTED)
    return fig


@dataclass(frozen=True)
class MapPoint:
    """One point of the voice map."""

    label: str
    kind: str  # "voice" (saved), "reference" (unsaved recording a result came from) or "result"
    group: str  # points of one group share a colour: a voice and the results made from it
    link: int | None = None  # index of the point a result was cloned from


def voice_map_figure(points: Sequence[MapPoint], coords: np.ndarray, method: str) -> Figure:
    """Scatter of saved voices (discs), unsaved references (rings) and results (crosses).

    Each result is joined to the voice it was cloned from by a thin line, so a clone
    that lands next to its source is easy to see.
    """
    fig = _figure(7.5, 5.2)
    ax = fig.add_subplot()
    if not points:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No voices yet: save a voice or synthesize something.", ha="center", va="center",
                color=MUTED, fontsize=10, transform=ax.transAxes)
        return fig
    groups = list(dict.fromkeys(p.group for p in points))
    colour = {g: VOICE_COLOURS[k % len(VOICE_COLOURS)] for k, g in enumerate(groups)}
    for k, point in enumerate(points):
        if point.link is not None:
            (x0, y0), (x1, y1) = coords[point.link], coords[k]
            ax.plot([x0, x1], [y0, y1], color=colour[point.group], alpha=0.35, linewidth=1, zorder=1)
    styles = {"voice": dict(marker="o", s=90), "reference": dict(marker="o", s=90, facecolors="none", linewidths=2),
              "result": dict(marker="X", s=70)}
    drawn = []
    for kind, style in styles.items():
        chosen = [k for k, p in enumerate(points) if p.kind == kind]
        if not chosen:
            continue
        drawn.append(kind)
        colours = [colour[points[k].group] for k in chosen]
        extra = {"edgecolors": colours} if style.get("facecolors") == "none" else {"c": colours}
        ax.scatter(coords[chosen, 0], coords[chosen, 1], zorder=2, label=_KIND_LEGEND[kind], **style, **extra)
    for k, point in enumerate(points):
        if point.kind != "result":
            ax.annotate(point.label, coords[k], textcoords="offset points", xytext=(7, 5), fontsize=8, color=INK)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"Voices and results ({'UMAP' if method == 'umap' else 'PCA'} of speaker embeddings)", fontsize=9)
    legend = ax.legend(loc="best", fontsize=8, frameon=False)
    for kind, handle in zip(drawn, legend.legend_handles):  # grey: colours stand for voices, not kinds
        handle.set_edgecolor(MUTED)
        if kind != "reference":
            handle.set_facecolor(MUTED)
    _style(ax)
    ax.margins(0.15)
    return fig


_KIND_LEGEND = {"voice": "saved voice", "reference": "unsaved reference", "result": "generated result"}
