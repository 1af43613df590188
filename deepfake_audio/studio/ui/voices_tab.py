"""The Voices tab: the map of saved voices, unsaved references and results, with its table."""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.ui.handlers import Handlers

MAP_HELP = """A map of speaker embeddings: voices that sound alike lie close together. Discs are
saved voices, rings are recordings that were used without saving, crosses are generated results,
joined to the voice they were cloned from. A good clone lands next to its source.
With fewer than four points the map is a PCA projection, from four on UMAP."""


class VoicesTab:
    """The Voices tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers):
        self.handlers = handlers
        with gr.Tab("Voices", id="voices") as self.tab:
            gr.Markdown(MAP_HELP)
            self.map_plot = gr.Plot(label="Voice map", show_label=False, format="png", elem_id="voice-map")
            self.map_table = gr.Dataframe(headers=["name", "kind", "similarity to source"],
                                          datatype=["str", "str", "number"], interactive=False,
                                          elem_id="voice-table")
            with gr.Row():
                self.refresh_button = gr.Button("Refresh map", elem_id="refresh-map")
                self.clear_button = gr.Button("Forget generated results", variant="secondary",
                                              elem_id="clear-results")

    def wire(self, owner_token: gr.BrowserState) -> None:
        """The map on opening the tab and on Refresh (/voice_map); Forget (/clear_results)."""
        shown = [self.map_plot, self.map_table]
        self.refresh_button.click(self.handlers.voice_map, owner_token, shown, api_name="voice_map")
        self.tab.select(self.handlers.voice_map, owner_token, shown, api_name="voices_tab", api_visibility="private")
        self.clear_button.click(self.handlers.clear_results, owner_token, shown, api_name="clear_results")
