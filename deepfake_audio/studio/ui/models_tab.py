"""The Models tab: which checkpoint each stage uses, by name (no server paths)."""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.service import Studio


def models_tab(studio: Studio) -> None:
    """Lay out the Models tab (it has no events)."""
    with gr.Tab("Models", id="models"):
        gr.Markdown("\n".join(f"- **{stage}**: {where}" for stage, where in studio.public_weights().items()))
