"""The Clone tab, one screen: the voice | the text, options, consent and Synthesize | the result.

Three columns on a wide screen, stacked in that order on a phone, so the result comes
right under Synthesize. Saving a voice and the options sit in collapsed sections whose
open state, like the options themselves, the browser remembers.
"""
from __future__ import annotations

import gradio as gr

from deepfake_audio.pipeline import MAX_TEXT_CHARS
from deepfake_audio_core.requests import MAX_PITCH_SEMITONES
from deepfake_audio.studio.examples import example_voices
from deepfake_audio.studio.service import MAX_SEED
from deepfake_audio.studio.ui.handlers import (FILE_FORMAT_CHOICES, LOUDNESS_CHOICES, RECORDING_CHOICE, REMEMBERED,
                                               SECTIONS, Handlers)

# Runs in the browser on every keystroke: no server round trip for the counter.
COUNT_JS = f"""
(text) => {{
  const n = (text || "").length;  // markup counts too: it is what the limit measures
  const limit = {MAX_TEXT_CHARS};
  return n > limit
    ? `**${{n}} / ${{limit}} characters**: ${{n - limit}} over the limit, shorten the text or split it.`
    : `${{n}} / ${{limit}} characters`;
}}
"""
# Page-only events: no API endpoint, no progress shown.
QUIET = dict(api_visibility="private", show_progress="hidden")


class CloneTab:
    """The Clone tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers, notice: str = ""):
        """`notice` (the starter models' note, if any) goes under the result."""
        self.handlers = handlers
        studio = handlers.studio
        # Made first, shown in the second column: the example voices fill them in from the first.
        self.text = gr.Textbox(label="Text to say", lines=3, max_lines=14, elem_id="text-input", render=False,
                               placeholder="What the voice should say (Ctrl+Enter synthesizes). [pause 1.5] adds "
                                           "silence; a line starting [voice: Name] is spoken by the saved voice Name.")
        self.consent = gr.Checkbox(label="I have the speaker's permission to clone this voice", value=False,
                                   elem_id="consent", render=False)
        with gr.Tab("Clone", id="clone"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    self._voice_column()
                with gr.Column(scale=1, min_width=300):
                    self.text.render()
                    self.count = gr.Markdown(f"0 / {MAX_TEXT_CHARS} characters", elem_id="char-count")
                    self._options_section(studio)
                    self.consent.render()
                    self.synthesize = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
                with gr.Column(scale=1, min_width=300):
                    self._result_column(studio, notice)

    def _voice_column(self) -> None:
        """The reference recording, the saved voice, the example voices and the save section."""
        self.reference = gr.Audio(label="Reference voice: 5-10 s of clear speech", sources=["upload", "microphone"],
                                  type="filepath", editable=True, elem_id="reference-audio")
        self.voice = gr.Dropdown(label="Or a saved voice", choices=[RECORDING_CHOICE], value="",
                                 allow_custom_value=True, elem_id="voice-choice")
        self.preview = gr.Audio(label="Saved voice preview", interactive=False, visible=False,
                                elem_id="voice-preview")
        examples = example_voices()
        if examples:
            # Synthetic speakers whose licences allow it: the consent box is ticked for them.
            gr.Examples([[str(e.path), e.text, True, RECORDING_CHOICE[1]] for e in examples],
                        [self.reference, self.text, self.consent, self.voice], elem_id="example-voices",
                        label="Example voices (synthetic, free to use)",
                        example_labels=[e.label for e in examples], examples_per_page=6)
        self._save_section()
        self.library_status = gr.Markdown(elem_id="library-status")

    def _save_section(self) -> None:
        """Save, extend or delete a voice (collapsed)."""
        with gr.Accordion("Save, extend or delete this voice", open=False, elem_id="save-section") as section:
            self.save_section = section
            self.more_clips = gr.File(label="More recordings of the same voice (optional, up to 9)",
                                      file_count="multiple", file_types=["audio"], type="filepath",
                                      elem_id="more-clips")
            with gr.Row(equal_height=True):
                self.voice_name = gr.Textbox(show_label=False, placeholder="Name for the recording", max_lines=1,
                                             scale=3, min_width=140, container=False, elem_id="voice-name")
                self.save_button = gr.Button("Save voice", size="md", scale=1, min_width=100, elem_id="save-voice")
                self.delete_button = gr.Button("Delete voice", variant="stop", size="md", scale=1, min_width=100,
                                               elem_id="delete-voice")
            self.add_clip_button = gr.Button("Add the recording above to the chosen voice", size="sm",
                                             elem_id="add-clip")
            self.clips_table = gr.Dataframe(headers=["recording", "similarity to the voice"],
                                            datatype=["number", "number"], interactive=False,
                                            elem_id="voice-clips", label="Recordings of this voice")

    def _options_section(self, studio) -> None:
        """Seed, vocoder, speaking rate, pitch, file, loudness, clean-up and live playback (collapsed)."""
        with gr.Accordion("Options", open=False, elem_id="options") as section:
            self.options_section = section
            with gr.Row():
                self.seed = gr.Number(label="Seed", value=0, precision=0, min_width=120, elem_id="seed",
                                      info=f"0 to {MAX_SEED}. Same seed, voice and text: same audio.")
                self.vocoder = gr.Radio(label="Vocoder", choices=studio.vocoder_choices(),
                                        value=studio.default_vocoder, min_width=200, elem_id="vocoder")
            with gr.Row():
                self.pace = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speaking rate",
                                      info="1 is the voice's own pace; 0.5 half as fast, 2 twice as fast",
                                      elem_id="pace")
                self.pitch = gr.Slider(-MAX_PITCH_SEMITONES, MAX_PITCH_SEMITONES, value=0, step=0.5,
                                       label="Pitch (semitones)", elem_id="pitch",
                                       info="0 is the voice's own; +12 an octave up, -12 an octave down")
            with gr.Row():
                self.file_format = gr.Dropdown(label="File", choices=FILE_FORMAT_CHOICES, value="wav",
                                               min_width=120, elem_id="file-format")
                self.loudness = gr.Dropdown(label="Loudness", choices=LOUDNESS_CHOICES, value="", min_width=160,
                                            elem_id="loudness", info="EBU R128 target for the file")
            self.clean = gr.Checkbox(label="Clean up the recording (reduce noise, keep the voice band)", value=False,
                                     elem_id="clean-up", info="On by itself after a microphone recording")
            self.stream = gr.Checkbox(label="Play while generating", value=studio.can_stream,
                                      visible=studio.can_stream, elem_id="stream-toggle",
                                      info="Hear the first words while the rest is still being made")

    def _result_column(self, studio, notice: str) -> None:
        """The live player, the error message, the result, its similarity, status and figures."""
        self.live = gr.Audio(label="Live playback", streaming=True, autoplay=True, interactive=False,
                             visible=studio.can_stream, elem_id="live-audio")
        self.message = gr.Markdown(visible=False, elem_id="result-message")
        self.output = gr.Audio(label="Cloned speech", type="filepath", interactive=False, buttons=["download"],
                               elem_id="output-audio")
        self.similarity = gr.Textbox(label="Speaker similarity (cosine of encoder embeddings, 0 to 1)",
                                     interactive=False, max_lines=1, elem_id="similarity")
        self.reading = gr.Markdown(elem_id="similarity-reading")
        self.status = gr.Markdown(elem_id="run-status")
        self.mel_plot = gr.Plot(label="Mel spectrogram", show_label=False, format="png", elem_id="mel-plot")
        self.embedding_plot = gr.Plot(label="Speaker embeddings", show_label=False, format="png",
                                      elem_id="embedding-plot")
        if notice:  # the starter's note: after the result on a phone too
            gr.Markdown(notice, elem_id="weights-notice")

    @property
    def remembered(self) -> list[gr.components.Component]:
        """The options the browser remembers, in `REMEMBERED`'s order (each is the attribute of its key)."""
        return [getattr(self, key) for key in REMEMBERED]

    def wire(self, demo: gr.Blocks, owner_token: gr.BrowserState, prefs: gr.BrowserState) -> None:
        """Connect the tab's events: counting, cloning (/clone), the voice library, the session, the options."""
        handlers, heavy = self.handlers, self.handlers.heavy
        self.text.change(None, inputs=self.text, outputs=self.count, js=COUNT_JS)
        clone_inputs = [self.reference, self.voice, self.text, self.seed, self.vocoder, self.stream, self.consent,
                        owner_token, self.pace, self.file_format, self.loudness, self.clean, self.pitch]
        clone_outputs = [self.output, self.similarity, self.reading, self.status, self.mel_plot, self.embedding_plot,
                         self.live]
        self.synthesize.click(handlers.clone_on_page, clone_inputs, [self.message, *clone_outputs],
                              api_visibility="private", scroll_to_output=True, show_progress_on=clone_outputs[:1],
                              **heavy)
        # The same request for API clients, where a failure must raise: a button the page never shows.
        api_clone = gr.Button(visible=False, elem_id="api-clone")
        api_clone.click(handlers.clone, clone_inputs, clone_outputs, api_name="clone", **heavy)
        self._wire_library(owner_token)
        demo.load(handlers.start_session, [owner_token, self.voice], [owner_token, self.voice], **QUIET)
        self._wire_remembered(demo, prefs)

    def _wire_library(self, owner_token: gr.BrowserState) -> None:
        """Save (/save_voice), extend (/add_clip), list (/voice_clips), preview and delete (/delete_voice)."""
        handlers, heavy = self.handlers, self.handlers.heavy
        self.save_button.click(handlers.save_voice, [self.voice_name, self.reference, self.consent, owner_token,
                                                     self.more_clips, self.clean],
                               [self.voice, self.library_status, self.voice_name, self.more_clips, self.clips_table],
                               api_name="save_voice", **heavy)
        self.add_clip_button.click(handlers.add_clip, [self.voice, self.reference, self.consent, owner_token,
                                                       self.clean],
                                   [self.library_status, self.clips_table], api_name="add_clip", **heavy)
        self.voice.change(handlers.voice_clips, [self.voice, owner_token], self.clips_table, api_name="voice_clips",
                          show_progress="hidden")
        # A microphone recording gets the clean-up by default; an uploaded file does not.
        self.reference.stop_recording(lambda: True, None, self.clean, **QUIET)
        self.reference.upload(lambda: False, None, self.clean, **QUIET)
        self.delete_button.click(handlers.delete_voice, [self.voice, owner_token], [self.voice, self.library_status],
                                 api_name="delete_voice")
        self.voice.change(handlers.show_voice, [self.voice, owner_token], self.preview, **QUIET)

    def _wire_remembered(self, demo: gr.Blocks, prefs: gr.BrowserState) -> None:
        """The browser remembers the options and which sections were open."""
        sections = dict(zip(SECTIONS, (self.options_section, self.save_section)))
        private = dict(QUIET, queue=False)
        demo.load(self.handlers.restore_options, prefs, self.remembered + list(sections.values()), **private)
        for component in self.remembered:
            component.change(self.handlers.remember_options, [prefs, *self.remembered], prefs, **private)
        for key, section in sections.items():
            section.expand(lambda p, key=key: {**(p or {}), key: True}, prefs, prefs, **private)
            section.collapse(lambda p, key=key: {**(p or {}), key: False}, prefs, prefs, **private)
