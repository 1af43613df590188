"""What the studio tells the user in words: which weights run, what is missing, how a clone went.

`weights_notice` and `public_weights` never show a server path; `StageReporter` turns
the pipeline's progress events into the progress bar's words; `clone_status` is the
status line under a result.
"""
from __future__ import annotations

from typing import Callable

from deepfake_audio.download import download_command
from deepfake_audio.pipeline import VOCODER_LABELS, CloneResult, Pipeline, ProgressEvent

# (fraction done in [0, 1], what is happening): fed to the web page's progress bar.
Report = Callable[[float, str], None]


def _vocoder_stand_in(pipeline: Pipeline) -> str:
    """What vocodes when vocoder.pt is missing."""
    return "the starter vocoder" if pipeline.starter_vocoder is not None else "Griffin-Lim"


def public_weights(pipeline: Pipeline) -> dict[str, str]:
    """Which weights each stage uses, in words and without server paths (for the page)."""
    described = {"encoder": f"official speaker encoder (step {pipeline.encoder.step})"}
    for stage, model, path in (("synthesizer", pipeline.synthesizer, pipeline.synthesizer_path),
                               ("vocoder", pipeline.vocoder, pipeline.vocoder_path)):
        if model is None:
            stand_in = _vocoder_stand_in(pipeline)
            described[stage] = f"`{path.name}` missing" + (f": {stand_in} stands in" if stage == "vocoder" else "")
        elif pipeline.is_starter(stage):
            described[stage] = f"small starter model (step {model.step}), trained on synthetic voices"
        else:
            described[stage] = f"`{path.name}` (step {model.step})"
    return described


def weights_notice(pipeline: Pipeline) -> str:
    """One Markdown line per missing checkpoint, with the command that fetches it ('' when complete).

    No server path is shown: a folder other than the default is named "<models folder>".
    """
    command = download_command(pipeline.models_dir)
    if "--models" in command:
        command = command[:command.index("--models")] + "--models <models folder>"
    lines = []
    starter = pipeline.is_starter("synthesizer")
    has_vocoder = pipeline.vocoder is not None
    if starter:
        vocoder = "WaveRNN" if has_vocoder else _vocoder_stand_in(pipeline)
        lines.append(f"**Starter models in use**: cloning works offline with the small starter synthesizer "
                     f"(trained here on synthetic voices) and {vocoder}. The official models sound far more "
                     f"natural and closer to the reference: fetch them with `{command}` and restart.")
    if pipeline.synthesizer is None:
        lines.append(f"**No synthesizer weights** ({pipeline.synthesizer_path.name} is not in the models "
                     f"folder): cloning is off until you run `{command}`.")
    if not has_vocoder and not starter:
        lines.append(f"**No WaveRNN vocoder weights**: {_vocoder_stand_in(pipeline)} stands in (faster, more "
                     f"robotic). Fetch the vocoder with `{command}`.")
    return "\n\n".join(lines)


def vocoder_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(label, value) pairs of the vocoders that can run now."""
    choices = [("WaveRNN (natural, slow on CPU)", "wavernn")] if pipeline.vocoder is not None else []
    if pipeline.starter_vocoder is not None:
        choices.append(("Starter vocoder (fast, follows the voice's pitch)", "starter"))
    return choices + [("Griffin-Lim (fast, robotic)", "griffinlim")]


def clone_status(result: CloneResult, seed: int, vocoder: str, note: str, compare_seconds: float,
                 first_audio: float | None = None) -> str:
    """The Markdown status of a finished clone: durations, real-time factor, stage times, seed, vocoder."""
    rtf = result.real_time_factor
    pace = "faster than real time" if rtf < 1 else "slower than real time"
    stages = " · ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.seconds.items())
    if first_audio is not None:
        stages += f" (first audio after {first_audio:.1f} s)"
    sentences = len(result.sentences)
    lines = [f"**{result.duration:.1f} s** of speech in {sum(result.seconds.values()):.1f} s: "
             f"**real-time factor {rtf:.2f}** ({pace}).",
             f"{stages} · similarity check {compare_seconds:.1f} s. Seed {seed}, "
             f"{VOCODER_LABELS[vocoder].removesuffix(' vocoder')} vocoder, {sentences} "
             f"sentence{'s' if sentences != 1 else ''}."]
    if note:
        lines.append(note)
    return "\n\n".join(lines)


class StageReporter:
    """Turns the pipeline's `ProgressEvent`s into words for the page, at most every 1 % of a step stage."""

    def __init__(self, report: Report | None):
        self.report: Report = report or (lambda fraction, desc: None)
        self.vocoder = ""  # known once the request is planned
        self.last: tuple[tuple[str, str, int], float] | None = None

    def __call__(self, event: ProgressEvent) -> None:
        key = (event.stage, event.unit, event.total)
        if event.unit == "step" and self.last is not None and self.last[0] == key \
                and event.fraction - self.last[1] < 0.01 and event.done < event.total:
            return
        self.last = (key, event.fraction)
        self.report(min(max(event.fraction, 0.0), 1.0), self.describe(event))

    def describe(self, event: ProgressEvent) -> str:
        """The progress bar's words for one event."""
        if event.stage == "encoding":
            return "Encoding the reference voice"
        if event.stage == "synthesizing":
            if event.done == 0:
                return f"Synthesizing {event.total} sentence{'' if event.total == 1 else 's'}"
            return f"Synthesizing sentence {event.done} of {event.total}"
        label = f"Vocoding with {VOCODER_LABELS.get(self.vocoder, self.vocoder)}"
        if event.done == 0:
            return label
        if event.unit == "sentence":
            return f"{label}: sentence {event.done} of {event.total}"
        return f"{label}: {100 * event.done // max(event.total, 1)}%"
