"""The Check audio tab: does a file carry this studio's watermark, and what do its tags say."""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.ui.handlers import Handlers

CHECK_HELP = """Every clone this studio makes carries an inaudible watermark (Resemble's Perth) and
says in its file tags that it is an AI-generated voice clone. Upload a file to check it. The watermark
survives MP3 coding, resampling and some noise, but it is a deterrent, not proof: it can be removed, and
audio without it may still be generated."""


class CheckTab:
    """The Check audio tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers):
        self.handlers = handlers
        with gr.Tab("Check audio", id="check"):
            gr.Markdown(CHECK_HELP)
            self.file = gr.File(label="Audio file (WAV, FLAC, MP3, OGG)", file_types=["audio"], type="filepath",
                                elem_id="check-file")
            self.button = gr.Button("Check for the watermark", elem_id="check-audio")
            self.verdict = gr.Markdown(elem_id="check-verdict")
            self.score = gr.Number(label="Watermark score (0 to 1; 0.5 and above: watermarked)", interactive=False,
                                   elem_id="check-score")

    def wire(self) -> None:
        """The check (/detect)."""
        self.button.click(self.handlers.check_audio, self.file, [self.verdict, self.score], api_name="detect",
                          **self.handlers.heavy)
