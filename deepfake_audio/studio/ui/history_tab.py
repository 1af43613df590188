"""The History tab: the owner's last 20 results, to play or download again."""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.ui.handlers import Handlers


class HistoryTab:
    """The History tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers):
        self.handlers = handlers
        with gr.Tab("History", id="history") as self.tab:
            gr.Markdown("Your last 20 results, newest first: pick one to play it again or download it.")
            self.table = gr.Dataframe(headers=["#", "made", "voice", "seconds", "file", "text"],
                                      datatype=["number", "str", "str", "number", "str", "str"],
                                      interactive=False, elem_id="history-table")
            self.pick = gr.Dropdown(label="Result", choices=[], elem_id="history-pick",
                                    allow_custom_value=True)  # a script passes a number directly
            self.audio = gr.Audio(label="Result", type="filepath", interactive=False, buttons=["download"],
                                  elem_id="history-audio")

    def wire(self, owner_token: gr.BrowserState) -> None:
        """The list on opening the tab (/history); a picked result's file (/history_file)."""
        self.tab.select(self.handlers.show_history, owner_token, [self.table, self.pick], api_name="history")
        self.pick.change(self.handlers.play_history, [self.pick, owner_token], self.audio, api_name="history_file")
