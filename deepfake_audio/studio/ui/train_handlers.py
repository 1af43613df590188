"""The "Train a voice" tab's event handlers, and its part of the public Gradio API.

Each public method is one endpoint (/train_takes, /train_add_take, /train_keep, /train_redo,
/train_skip, /train_keep_take, /train_remove_take, /train_discard, /train_import,
/train_start, /train_status, /train_cancel) or a page-only event, its parameters in the
API's order. Like every handler that touches a library,
each takes the owner token (see `deepfake_audio.studio.owners`).
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from deepfake_audio.studio.takes import HELPFUL_MINUTES, LEAST_MINUTES, MIN_TAKES, Take, TakeProgress
from deepfake_audio.studio.tuning_jobs import ACTIVE
from deepfake_audio.studio.ui.errors import hide_server_paths, user_errors
from deepfake_audio.studio.ui.handlers import Handlers

# Most of the likeness comes in the first 2 minutes of training (bench/RESULTS.md): 3 is the quick choice.
BUDGET_CHOICES = [("3 minutes", 3), ("10 minutes", 10), ("20 minutes", 20), ("40 minutes", 40)]
TAKE_HEADERS = ["take", "sentence", "seconds", "check"]
NO_JOB = (f"Nothing is training yet. Record at least {MIN_TAKES} takes (about {LEAST_MINUTES * 60:.0f} seconds of "
          f"speech already bring the voice closer; about {HELPFUL_MINUTES:g} minutes also make its words clearer), tick "
          "the consent box and press **Start training**.")


def _minutes(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_text(progress: TakeProgress) -> str:
    """How far the recording has come, in words (Markdown)."""
    left_out = f"; {progress.left_out} flagged and left out" if progress.left_out else ""
    if progress.minutes >= HELPFUL_MINUTES:
        advice = "That is plenty: more takes help little now."
    elif progress.used >= MIN_TAKES:
        advice = f"Enough to bring the voice closer; about {HELPFUL_MINUTES:g} minutes also make its words clearer."
    else:
        advice = (f"Record at least {MIN_TAKES} takes; about {HELPFUL_MINUTES:g} minutes also make the voice's "
                  "words clearer.")
    takes = f"{progress.used} take{'' if progress.used == 1 else 's'}"
    return f"**{takes}, {progress.minutes:.1f} minutes** for training{left_out}. {advice}"


def take_rows(takes: list[Take]) -> list[list]:
    return [[t.number, t.text, round(t.seconds, 1), t.verdict] for t in takes]


def note_text(take: Take) -> str:
    """The check of a take just made, in words (Markdown)."""
    if not take.flagged:
        return f"**Good take.** {take.note}"
    if take.outlier and not take.problems:
        note = ("This take sounds like a different speaker from your other takes: record it again in the same "
                "voice and place.")
    else:
        note = take.note
    kept = " You chose to keep it." if take.kept else " Redo it, or **Keep** it anyway."
    return f"**Flagged:** {note}{kept}"


def status_text(status: dict | None) -> str:
    """A job's state in words (Markdown)."""
    if status is None:
        return NO_JOB
    name, state = status["name"], status["state"]
    if state == "queued":
        return (f"**Waiting** to train *{name}*: place {status['place']} in line, starting in about "
                f"{_minutes(status['wait_s'])}.")
    if state == "running":
        if status["phase"] in (None, "preparing"):
            return f"**Preparing** the {status['takes']} takes of *{name}*…"
        if status["phase"] == "vocoder":
            return (f"**Tuning the vocoder** to *{name}*'s takes: {_minutes(status['left_s'])} left of "
                    f"{_minutes(status['budget_s'])}. It is kept only if it brings the clones nearer your takes.")
        samples = f" {status['samples']} samples so far: listen below.{_likeness(status)}" if status["samples"] else ""
        return (f"**Training** *{name}*: step {status['step']}, {_minutes(status['left_s'])} left of "
                f"{_minutes(status['budget_s'])}.{samples}{_language(status)}")
    if state == "done":
        kept = status.get("kept_step")
        steps = (f"{status['step']} steps" if kept in (None, status["step"]) else
                 f"step {kept} of {status['step']}, the piece nearest your held-back takes")
        own = " It speaks with its own vocoder, tuned to your takes as well." if status.get("vocoder") == "kept" else ""
        return (f"**Done:** *{status['voice']}* is saved in your voices, tuned on {status['takes']} takes "
                f"({steps}).{own} Pick it on the Clone tab.{_language(status)}")
    if state == "failed":
        return f"**Failed:** {hide_server_paths(status['error'] or 'the training stopped.')}"
    return f"**Cancelled:** *{name}* was not trained."


def _language(status: dict) -> str:
    """A word on takes in another language than English (said, or told by their letters)."""
    if not status.get("timbre_only"):
        return ""
    if status.get("state") == "done":
        return (" Only the voice's colour was trained (your takes are not in English), which keeps its English "
                "words clear.")
    return " Your takes are not in English, so only the voice's colour trains, which keeps its English words clear."


def _likeness(status: dict) -> str:
    """How near the samples sound to the takes, in words: the latest's similarity, and before
    training (the step-0 sample) or else the first's."""
    scores = [(step, v) for step, v in status.get("similarities", []) if isinstance(v, (int, float))]
    if not scores:
        return ""
    (first_step, first), (_, latest) = scores[0], scores[-1]
    if len(scores) == 1:
        return f" {'Before training it is' if first_step == 0 else 'The latest is'} {latest:.2f} similar to your takes."
    then = "before training" if first_step == 0 else "the first"
    return f" The latest is {latest:.2f} similar to your takes ({then}: {first:.2f})."


def loss_frame(status: dict | None) -> pd.DataFrame:
    rows = status["losses"] if status else []
    return pd.DataFrame({"step": [r[0] for r in rows], "loss": [r[1] for r in rows]})


class TrainHandlers:
    """The Gradio event functions of the Train a voice tab, bound to one studio."""

    def __init__(self, handlers: Handlers):
        self.handlers = handlers
        self.studio = handlers.studio
        self.owner_of = handlers.owner_of

    def _prompt(self, progress: TakeProgress) -> tuple[str, int | None]:
        prompts = self.studio.training.prompts()
        if progress.next_prompt is None:
            return "You have read every sentence. Start the training, or upload more takes below.", None
        k = progress.next_prompt
        return f"**Sentence {k + 1} of {len(prompts)}.** Read it aloud:\n\n> {prompts[k]}", k

    def _takes_view(self, name, owner) -> tuple[str, int | None, str, list[list]]:
        takes, progress = self.studio.training.takes(name, owner)
        prompt, number = self._prompt(progress)
        return prompt, number, progress_text(progress), take_rows(takes)

    # The takes

    @user_errors
    def takes(self, name, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The voice `name`'s next prompt (in words, and its number), your progress, and your takes so far
        (number, sentence, seconds, check)."""
        return self._takes_view(name, self.owner_of(owner_token, profile))

    @user_errors
    def add_take(self, name, take, prompt, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Check the recording `take` of prompt number `prompt` (as /train_takes gives it) and keep it as a take
        of the voice `name`; another take of the same prompt replaces it. Returns the check in words, your
        progress and your takes."""
        owner = self.owner_of(owner_token, profile)
        if take is None:  # the recorder was cleared
            return "", *self._takes_view(name, owner)[2:]
        added = self.studio.add_take(name, take, prompt, owner=owner)
        takes, progress = self.studio.training.takes(name, owner)
        added = next((t for t in takes if t.number == added.number), added)  # with the speaker check of the set
        return note_text(added), progress_text(progress), take_rows(takes)

    @user_errors
    def keep(self, name, prompt, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Keep the take of prompt `prompt` (a flagged one too) and go on: the next prompt, its number, the
        recorder cleared, the note, your progress and takes."""
        owner = self.owner_of(owner_token, profile)
        kept = None
        if prompt is not None and prompt != "":
            kept = self.studio.training.keep_take(name, prompt, owner)
        prompt_text, number, progress, rows = self._takes_view(name, owner)
        if kept is None:  # nothing recorded for it: the same prompt again
            return prompt_text, number, gr.skip(), "Record the sentence first, or **Skip** it.", progress, rows
        return prompt_text, number, None, "", progress, rows

    @user_errors
    def redo(self, name, prompt, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Forget the take of prompt `prompt`, to record it again."""
        owner = self.owner_of(owner_token, profile)
        if prompt is not None and prompt != "":
            self.studio.training.redo_take(name, prompt, owner)
        return None, "Record the sentence again.", *self._takes_view(name, owner)[2:]

    @user_errors
    def skip(self, name, prompt, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Pass over prompt `prompt` (its take, if any, goes) and go on to the next one."""
        owner = self.owner_of(owner_token, profile)
        if prompt is not None and prompt != "":
            self.studio.training.skip_prompt(name, prompt, owner)
        prompt_text, number, progress, rows = self._takes_view(name, owner)
        return prompt_text, number, None, "", progress, rows

    @user_errors
    def keep_number(self, name, number, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Keep take `number` (as the takes table numbers them) in training even though it is flagged."""
        owner = self.owner_of(owner_token, profile)
        take = self.studio.training.keep_take_number(name, number, owner)
        return f"Take {take.number} is kept for training.", *self._takes_view(name, owner)[2:]

    @user_errors
    def remove(self, name, number, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Delete take `number` of the voice `name`; its prompt is offered again."""
        owner = self.owner_of(owner_token, profile)
        take = self.studio.training.remove_take(name, number, owner)
        return f"Take {take.number} is deleted.", *self._takes_view(name, owner)

    @user_errors
    def discard(self, name, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Delete every take of the voice `name` (a saved voice made from them stays)."""
        owner = self.owner_of(owner_token, profile)
        self.studio.training.discard_takes(name, owner)
        return "Every take of this voice is deleted.", *self._takes_view(name, owner)

    @staticmethod
    def pick(evt: gr.SelectData):
        """A row picked in the takes table: its take number."""
        return (evt.row_value or [None])[0]

    @user_errors
    def import_takes(self, name, zip_file=None, long_recording=None, transcript="", owner_token=None,
                     profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Add takes to the voice `name` from a ZIP of recordings with a .txt each (`zip_file`), or from one
        `long_recording` and its `transcript` (cut at its pauses). Returns what was added, the next prompt
        and its number, your progress and takes."""
        owner = self.owner_of(owner_token, profile)
        report = lambda fraction, desc: progress(fraction, desc=desc)  # noqa: E731
        if zip_file:
            taken, skipped = self.studio.training.import_zip(name, zip_file, owner, report)
        else:
            taken, skipped = self.studio.training.import_long(name, long_recording, transcript, owner, report)
        flagged = sum(1 for t in taken if t.flagged)
        text = f"Added **{len(taken)} takes** ({flagged} flagged: see the table)." if flagged else \
            f"Added **{len(taken)} takes**."
        if skipped:
            text += "\n\nLeft out:\n" + "\n".join(f"- {hide_server_paths(s)}" for s in skipped[:20])
        return text, *self._takes_view(name, owner)

    # The job

    @user_errors
    def start(self, name, consent=False, minutes=20, other_language=False, owner_token=None,
              profile: gr.OAuthProfile | None = None):
        """Train the voice `name` on its takes for `minutes` (3, 10, 20 or 40 on the page; needs `consent`:
        you have the speaker's permission). `other_language`: the takes are not in English, so only the
        voice's colour trains and its English words stay clear (takes in other alphabets are found
        without it). The tuned voice is saved in your voices when it is done. Returns the job's state
        in words and its id (for /train_status and /train_cancel)."""
        status = self.studio.start_training(name, consent, minutes, self.owner_of(owner_token, profile),
                                            other_language=bool(other_language))
        return status_text(status), status["id"]

    def _status(self, job_id, owner) -> dict | None:
        if job_id:
            return self.studio.training_status(job_id, owner)
        return self.studio.training.latest(owner)

    @user_errors
    def status(self, job_id=None, owner_token=None, profile: gr.OAuthProfile | None = None):
        """A training job's state (your latest when `job_id` is empty): in words, its loss curve (step, loss),
        its latest sample spoken with the voice so far, and the details (state, place in line, step,
        seconds left, error, the saved voice) as JSON."""
        status = self._status(job_id, self.owner_of(owner_token, profile))
        sample = self.studio.training.sample_for_page(status) if status else None
        details = {k: v for k, v in status.items() if k not in ("losses", "sample")} if status else {}
        return status_text(status), loss_frame(status), None if sample is None else str(sample), details

    def poll(self, job_id, shown_sample, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The page's timer: the status, the sample only when it is new, the voice picker once a job is done,
        and the timer itself (it stops once the job is over)."""
        owner = self.owner_of(owner_token, profile)
        try:
            text, losses, sample, details = self.status(job_id, owner_token, profile)
        except gr.Error as exc:
            return (f"**Error:** {exc.message}", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    gr.Timer(active=False))
        active = details.get("state") in ACTIVE
        voices = gr.skip() if active or not details else gr.update(choices=self.handlers.voice_choices(owner))
        new_sample = gr.skip() if sample == shown_sample else sample
        return (text, losses, new_sample, sample, details.get("id", job_id or ""), voices,
                gr.Timer(active=active))

    @user_errors
    def cancel(self, job_id=None, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Cancel your training job `job_id` (your latest when empty); returns its state in words."""
        owner = self.owner_of(owner_token, profile)
        status = self._status(job_id, owner)
        if status is None:
            return NO_JOB
        return status_text(self.studio.cancel_training(status["id"], owner))

    def open_tab(self, name, owner_token=None, profile: gr.OAuthProfile | None = None):
        """On opening the tab: the takes of the voice named, and the latest job (its timer on while it runs)."""
        owner = self.owner_of(owner_token, profile)
        try:
            view = self._takes_view(name, owner)
        except Exception:  # a name being typed, or no owner yet: the takes appear once it is usable
            view = (gr.skip(),) * 4
        try:
            latest = self.studio.training.latest(owner)
        except Exception:
            latest = None
        job_id = latest["id"] if latest else ""
        return (*view, job_id, status_text(latest), gr.Timer(active=bool(latest) and latest["state"] in ACTIVE))
