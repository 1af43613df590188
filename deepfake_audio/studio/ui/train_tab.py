"""The Train a voice tab: read prompts into the microphone (or upload takes) | train, watch, listen.

Two columns on a wide screen, stacked on a phone: the takes (one prompt at a time, the
recorder, the take's check, Keep / Redo / Skip, progress, the takes so far, uploads) and
the job (consent, time, Start / Cancel, its state, loss curve and latest sample, polled
every few seconds while it waits or runs).
"""
from __future__ import annotations

import gradio as gr

from deepfake_audio.studio.ui.handlers import Handlers
from deepfake_audio.studio.ui.train_handlers import BUDGET_CHOICES, NO_JOB, TAKE_HEADERS, TrainHandlers

TRAIN_HELP = """Make a voice that sounds more like you: read the sentences aloud one at a time (or
upload takes), then start the training. It runs beside the studio for the time you choose, and the
voice it makes is saved in your voices: pick it on the Clone tab like any saved voice. Each take is
checked as it comes; a flagged take is left out unless you keep it. Your takes are kept as you go, so
you can close the page and carry on later."""
POLL_SECONDS = 2.0
QUIET = dict(api_visibility="private", show_progress="hidden")


class TrainTab:
    """The Train a voice tab's components, laid out when it is made; `wire` connects its events."""

    def __init__(self, handlers: Handlers):
        self.handlers = TrainHandlers(handlers)
        with gr.Tab("Train a voice", id="train") as self.tab:
            gr.Markdown(TRAIN_HELP)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    self._takes_column()
                with gr.Column(scale=1, min_width=300):
                    self._job_column()

    def _takes_column(self) -> None:
        """The voice's name, the prompt, the recorder and the take's check, progress, takes and uploads."""
        self.name = gr.Textbox(label="Name of the voice", value="My voice", max_lines=1, elem_id="train-name")
        self.prompt = gr.Markdown(elem_id="train-prompt")
        self.prompt_number = gr.Number(visible=False, precision=0, elem_id="train-prompt-number")
        self.take = gr.Audio(label="Your take: record it, then listen", sources=["microphone", "upload"],
                             type="filepath", elem_id="train-take")
        self.note = gr.Markdown(elem_id="train-note")
        with gr.Row():
            self.keep_button = gr.Button("Keep", variant="primary", elem_id="train-keep")
            self.redo_button = gr.Button("Redo", elem_id="train-redo")
            self.skip_button = gr.Button("Skip", elem_id="train-skip")
        self.progress = gr.Markdown(elem_id="train-progress")
        self.table = gr.Dataframe(headers=TAKE_HEADERS, datatype=["number", "str", "number", "str"],
                                  interactive=False, wrap=True, column_widths=["10%", "52%", "13%", "25%"],
                                  max_height=360, label="Your takes", elem_id="train-takes")
        with gr.Accordion("Manage your takes", open=False, elem_id="train-manage"):
            with gr.Row(equal_height=True):
                self.take_number = gr.Number(label="Take (pick it in the table)", precision=0, minimum=1,
                                             min_width=120, elem_id="train-take-number")
                self.keep_number_button = gr.Button("Keep it anyway", min_width=100, elem_id="train-keep-number")
                self.remove_button = gr.Button("Delete it", min_width=100, elem_id="train-remove")
            self.discard_button = gr.Button("Delete every take of this voice", variant="stop", size="sm",
                                            elem_id="train-discard")
            self.manage_note = gr.Markdown(elem_id="train-manage-note")
        with gr.Accordion("Or upload takes: a ZIP, or one long recording", open=False, elem_id="train-upload"):
            self.zip = gr.File(label="ZIP of recordings, each with a .txt file of what was read",
                               file_types=[".zip"], type="filepath", elem_id="train-zip")
            self.long = gr.Audio(label="Or one long recording (up to 30 minutes)", sources=["upload"],
                                 type="filepath", elem_id="train-long")
            self.transcript = gr.Textbox(label="Its transcript: every word that was read, in order", lines=4,
                                         elem_id="train-transcript")
            self.import_button = gr.Button("Add these takes", elem_id="train-import")
            self.import_note = gr.Markdown(elem_id="train-import-note")

    def _job_column(self) -> None:
        """Consent, time budget, Start and Cancel; the job's state, loss curve and latest sample."""
        self.consent = gr.Checkbox(label="I am the speaker, or have the speaker's permission to train this voice",
                                   value=False, elem_id="train-consent")
        self.budget = gr.Radio(BUDGET_CHOICES, value=10, label="Training time", elem_id="train-budget",
                               info="Most of the likeness comes in the first 2 or 3 minutes, and you get the piece "
                                    "that sounded most like your takes; the studio stays usable meanwhile")
        self.other_language = gr.Checkbox(
            label="My takes are in another language than English", value=False, elem_id="train-other-language",
            info="Then only the voice's colour trains, so that it keeps its English words clear (takes in Russian, "
                 "Greek and other alphabets are found without this)")
        with gr.Row():
            self.start_button = gr.Button("Start training", variant="primary", elem_id="train-start")
            self.cancel_button = gr.Button("Cancel training", variant="stop", elem_id="train-cancel")
        self.status = gr.Markdown(NO_JOB, elem_id="train-status")
        self.loss = gr.LinePlot(x="step", y="loss", label="Training loss (lower is closer to your takes)",
                                height=220, elem_id="train-loss")
        self.sample = gr.Audio(label="The voice so far: a sample every minute or two", type="filepath",
                               interactive=False, elem_id="train-sample")
        self.details = gr.JSON(visible=False)
        self.job_id = gr.Textbox(visible=False, elem_id="train-job")
        # the sample on show, to send only a new one; not a gr.State: any State makes every API client hold
        # a heartbeat connection open, and a server being stopped then waits for them forever
        self.shown_sample = gr.Textbox(visible=False, elem_id="train-shown-sample")
        self.timer = gr.Timer(POLL_SECONDS, active=False)

    def wire(self, owner_token: gr.BrowserState, voice_picker: gr.Dropdown) -> None:
        """The takes (/train_takes, /train_add_take, /train_keep, /train_redo, /train_skip, /train_import, and
        /train_keep_take, /train_remove_take, /train_discard) and
        the job (/train_start, /train_status, /train_cancel); `voice_picker` (the Clone tab's) learns of a
        voice once its training is done."""
        h = self.handlers
        view = [self.prompt, self.prompt_number, self.progress, self.table]
        job_view = [self.job_id, self.status, self.timer]
        self.tab.select(h.open_tab, [self.name, owner_token], view + job_view, **QUIET)
        owner_token.change(h.open_tab, [self.name, owner_token], view + job_view, **QUIET)  # a first visit's token
        self.name.change(h.open_tab, [self.name, owner_token], view + job_view, **QUIET)
        api_takes = gr.Button(visible=False, elem_id="api-train-takes")
        api_takes.click(h.takes, [self.name, owner_token], view, api_name="train_takes")
        checked = [self.note, self.progress, self.table]
        heavy = self.handlers.handlers.heavy  # checking and embedding a take runs the encoder
        self.take.stop_recording(h.add_take, [self.name, self.take, self.prompt_number, owner_token], checked,
                                 api_name="train_add_take", **heavy)
        self.take.upload(h.add_take, [self.name, self.take, self.prompt_number, owner_token], checked,
                         api_visibility="private", **heavy)
        moved = [self.prompt, self.prompt_number, self.take, self.note, self.progress, self.table]
        self.keep_button.click(h.keep, [self.name, self.prompt_number, owner_token], moved, api_name="train_keep")
        self.redo_button.click(h.redo, [self.name, self.prompt_number, owner_token],
                               [self.take, self.note, self.progress, self.table], api_name="train_redo")
        self.skip_button.click(h.skip, [self.name, self.prompt_number, owner_token], moved, api_name="train_skip")
        self._wire_manage(owner_token, view)
        self.import_button.click(h.import_takes, [self.name, self.zip, self.long, self.transcript, owner_token],
                                 [self.import_note] + view, api_name="train_import", **heavy)
        self._wire_job(owner_token, voice_picker)

    def _wire_manage(self, owner_token: gr.BrowserState, view: list) -> None:
        """A take picked in the table: keep it anyway (/train_keep_take) or delete it (/train_remove_take);
        or delete them all (/train_discard)."""
        h = self.handlers
        self.table.select(h.pick, None, self.take_number, **QUIET)
        self.keep_number_button.click(h.keep_number, [self.name, self.take_number, owner_token],
                                      [self.manage_note, self.progress, self.table], api_name="train_keep_take")
        self.remove_button.click(h.remove, [self.name, self.take_number, owner_token], [self.manage_note] + view,
                                 api_name="train_remove_take")
        self.discard_button.click(h.discard, [self.name, owner_token], [self.manage_note] + view,
                                  api_name="train_discard")

    def _wire_job(self, owner_token: gr.BrowserState, voice_picker: gr.Dropdown) -> None:
        h = self.handlers
        self.start_button.click(h.start, [self.name, self.consent, self.budget, self.other_language, owner_token],
                                [self.status, self.job_id], api_name="train_start"
                                ).success(lambda: gr.Timer(active=True), None, self.timer, **QUIET)
        self.cancel_button.click(h.cancel, [self.job_id, owner_token], self.status, api_name="train_cancel")
        api_status = gr.Button(visible=False, elem_id="api-train-status")
        api_status.click(h.status, [self.job_id, owner_token], [self.status, self.loss, self.sample, self.details],
                         api_name="train_status")
        self.timer.tick(h.poll, [self.job_id, self.shown_sample, owner_token],
                        [self.status, self.loss, self.sample, self.shown_sample, self.job_id, voice_picker,
                         self.timer], **QUIET)
