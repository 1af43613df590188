"""The Batch tab: a .txt or .csv of texts in, a ZIP of audio files and a manifest out."""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.ui.handlers import FILE_FORMAT_CHOICES, LOUDNESS_CHOICES, Handlers

BATCH_HELP = """Many clones at once. A **.txt** file becomes one audio file per paragraph (text between
blank lines). A **.csv** file with a header row `voice,text` (and optionally `file`) becomes one audio
file per row, spoken by the saved voice it names (empty or `default`: the voice chosen below) and named
after `file`. Every row is checked first; the ZIP holds the files and `manifest.csv`."""


class BatchTab:
    """The Batch tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers):
        self.handlers = handlers
        with gr.Tab("Batch", id="batch") as self.tab:
            gr.Markdown(BATCH_HELP)
            with gr.Row():
                with gr.Column():
                    self.file = gr.File(label="Text (.txt) or table (.csv)", file_types=[".txt", ".csv"],
                                        type="filepath", elem_id="batch-file")
                    # custom values: a script names a saved voice without opening the tab first
                    # (the studio checks the name itself)
                    self.voice = gr.Dropdown(label="Voice for rows without one", choices=[], elem_id="batch-voice",
                                             allow_custom_value=True,
                                             info="One of your saved voices (save it on the Clone tab)")
                    with gr.Row():
                        self.file_format = gr.Dropdown(label="File", choices=FILE_FORMAT_CHOICES, value="wav",
                                                       elem_id="batch-format")
                        self.loudness = gr.Dropdown(label="Loudness", choices=LOUDNESS_CHOICES, value="",
                                                    elem_id="batch-loudness")
                    self.button = gr.Button("Clone the batch", variant="primary", elem_id="batch-run")
                with gr.Column():
                    self.zip = gr.File(label="ZIP of audio files and manifest", interactive=False,
                                       elem_id="batch-zip")
                    self.status = gr.Markdown(elem_id="batch-status")

    def wire(self, owner_token: gr.BrowserState, pace: gr.Slider, pitch: gr.Slider) -> None:
        """The voice list on opening the tab; the batch (/batch), at the Clone tab's `pace` and `pitch`."""
        self.tab.select(self.handlers.batch_voices, owner_token, self.voice, api_visibility="private",
                        show_progress="hidden")
        self.button.click(self.handlers.run_batch, [self.file, self.voice, self.file_format, self.loudness, pace,
                                                    owner_token, pitch],
                          [self.zip, self.status], api_name="batch", **self.handlers.heavy)
