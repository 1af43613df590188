"""Deepfake Audio studio: the web app (Gradio 6 on FastAPI, installable as a PWA).

    python app.py [--host H] [--port P] [--models DIR] [--data DIR]

This file is UI only: layout, events and messages. The work is done by
`deepfake_audio.studio.Studio`, which loads the models once at start-up and chains
encoder, synthesizer and vocoder per request. Gradio is mounted on a FastAPI app whose
own routes serve the web manifest, the service worker and the offline page first.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import html
import inspect
import logging
import os
import re
import sys
import time
from pathlib import Path

# Before Gradio and huggingface_hub are imported: nothing in the studio phones home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import FileResponse, Response  # noqa: E402
from fastapi.staticfiles import StaticFiles  # noqa: E402

from deepfake_audio.core.errors import AudioError, DeepfakeAudioError, TextError, WeightsError  # noqa: E402
from deepfake_audio.core.modes import MODES  # noqa: E402
from deepfake_audio.http_api import speech_router  # noqa: E402
from deepfake_audio.pipeline import MAX_PITCH_SEMITONES, MAX_TEXT_CHARS, SAMPLE_RATE  # noqa: E402
from deepfake_audio.studio import MAX_SEED, RequestError, Studio, fetch_missing_weights  # noqa: E402
from deepfake_audio.studio import owners  # noqa: E402
from deepfake_audio.studio.access import ApiKeyGuard  # noqa: E402
from deepfake_audio.studio.limits import UPLOAD_WINDOW_SECONDS, RequestLimits  # noqa: E402
from deepfake_audio.studio.examples import example_voices  # noqa: E402
from deepfake_audio.studio.library import VoiceError  # noqa: E402
from deepfake_audio.watermark import check_file  # noqa: E402

logger = logging.getLogger("deepfake_audio.app")

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "static"
TITLE = "Deepfake Audio studio"
THEME_COLOUR = "#0f766e"
RECORDING_CHOICE = ("The recording above", "")
DEFAULT_PORT = 7860
DEFAULT_QUEUE_SIZE = 20
# Uploads and results in Gradio's cache: every 15 minutes, files older than the upload window (an hour) go.
UPLOAD_CACHE = (900, int(UPLOAD_WINDOW_SECONDS))

HEAD = f"""
<meta name="theme-color" content="{THEME_COLOUR}">
<meta name="description" content="Clone a voice from a few seconds of speech and make it say any text.">
<meta name="mobile-web-app-capable" content="yes">
<meta name="apple-mobile-web-app-title" content="Voice studio">
<link rel="apple-touch-icon" href="/pwa/icons/apple-touch-icon.png">
<script>
  // Ctrl+Enter (Cmd+Enter on a Mac) in the text box synthesizes.
  document.addEventListener("keydown", (event) => {{
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.closest("#text-input")) {{
      event.preventDefault();
      document.querySelector("#synthesize")?.click();
    }}
  }});
  if ("serviceWorker" in navigator) {{
    navigator.serviceWorker.register("/sw.js", {{ scope: "/" }})
      .catch((error) => console.warn("The studio works without its service worker:", error));
  }}
</script>
"""

LOUDNESS_CHOICES = [("As made (0.97 peak)", ""), ("-16 LUFS (podcasts, web)", "-16"),
                    ("-23 LUFS (broadcast, EBU R128)", "-23")]

CSS = """
#result-message { border-left: 4px solid #b91c1c; padding: 0.4em 0.8em; background: #fef2f2; color: #7f1d1d; }
#char-count p { margin: 0; font-size: var(--text-sm); color: var(--body-text-color-subdued); }
#similarity-reading p { margin: 0; }
#run-status p { margin: 0.2em 0; font-size: var(--text-sm); }
#weights-notice { border-left: 4px solid #b45309; padding-left: 0.8em; }
#weights-notice p { font-size: var(--text-sm); margin: 0.2em 0; }
#intro p { margin: 0; }
"""

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

INTRO = f"""# {TITLE}
Clone a voice from a few seconds of speech. Only clone voices you have permission to use."""

# Options and open sections of the Clone tab that the browser remembers (localStorage), by key.
REMEMBERED = ("seed", "vocoder", "pace", "pitch", "file_format", "loudness", "clean", "stream")

BATCH_HELP = """Many clones at once. A **.txt** file becomes one audio file per paragraph (text between
blank lines). A **.csv** file with a header row `voice,text` (and optionally `file`) becomes one audio
file per row, spoken by the saved voice it names (empty or `default`: the voice chosen below) and named
after `file`. Every row is checked first; the ZIP holds the files and `manifest.csv`."""

CHECK_HELP = """Every clone this studio makes carries an inaudible watermark (Resemble's Perth) and
says in its file tags that it is an AI-generated voice clone. Upload a file to check it. The watermark
survives MP3 coding, resampling and some noise, but it is a deterrent, not proof: it can be removed, and
audio without it may still be generated."""

MAP_HELP = """A map of speaker embeddings: voices that sound alike lie close together. Discs are
saved voices, rings are recordings that were used without saving, crosses are generated results,
joined to the voice they were cloned from. A good clone lands next to its source.
With fewer than four points the map is a PCA projection, from four on UMAP."""

ERROR_TITLES = [(AudioError, "Reference audio"), (TextError, "Text"), (WeightsError, "Model weights"),
                (VoiceError, "Voice library"), (RequestError, "Request")]


# An absolute path inside a message (POSIX, or a Windows drive path), up to a space, quote or colon.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[^\s'\":,]+[/\\])+([^\s'\":,/\\]*)")


def hide_server_paths(message: str) -> str:
    """`message` with every absolute path cut to its last part: the page never shows the server's folders."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "the folder", message)


def _as_user_error(exc: Exception, where: str) -> gr.Error:
    """The `gr.Error` shown for `exc`: its message when the user can act on it, else a generic one."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, DeepfakeAudioError):
        title = next((t for cls, t in ERROR_TITLES if isinstance(exc, cls)), "Error")
        return gr.Error(html.escape(hide_server_paths(str(exc)), quote=False), title=title, print_exception=False)
    logger.error("Unexpected error in %s", where, exc_info=exc)
    return gr.Error(f"Something went wrong on the server ({type(exc).__name__}). The details are in the "
                    "server log; your saved voices are safe.", title="Server error", print_exception=False)


def _user_errors(fn):
    """Turn the errors a user can act on into a `gr.Error` with their message; hide the rest.

    Works for plain functions and for generators (streamed events).
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_user_error(exc, fn.__name__) from None
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_user_error(exc, fn.__name__) from None
    return wrapper


def build_ui(studio: Studio, clone_concurrency: int = 1) -> gr.Blocks:
    """The studio's Blocks: Clone, Voices, Check audio and Models tabs, with named API endpoints.

    Every event that touches saved voices or results takes the owner token the page keeps
    in the browser (and the signed-in account on a Space with sign-in): see
    `deepfake_audio.studio.owners`. A single-user studio ignores both.
    """

    def owner_of(token, profile) -> str | None:
        if not studio.private:
            return None
        return owners.owner_id(token, getattr(profile, "username", None) if profile else None)

    def voice_choices(owner):
        return [RECORDING_CHOICE] + [(name, name) for name in studio.voice_names(owner)]

    def clone_steps(reference, voice, text, seed, vocoder, stream=False, consent=False, owner_token=None,
                    pace=1.0, file_format="wav", loudness=None, clean=False, pitch=0.0,
                    profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Speak `text` with a saved `voice` (a name) or, when `voice` is empty, the `reference` recording.

        A recording needs `consent` true: you confirm that you have the speaker's permission.
        `pace` is the speaking rate (0.5 to 2.0); `pitch` moves the voice up or down that many
        semitones (-12 to 12; 0 is the voice's own). The text may be a script: `[pause 1.5]` for
        silence, and lines starting `[voice: Name]` spoken by your saved voice `Name`.
        `file_format` is wav, flac, mp3 or ogg (Opus); `loudness` a target in LUFS (e.g. -16
        or -23, EBU R128) or empty to keep the 0.97 peak. `clean` reduces noise in the
        recording before it is encoded (the reading then gives the similarity without it too).
        `owner_token` is your secret token where the studio keeps voices private (the page
        sends its own). Returns the 16-bit WAV (watermarked, with provenance tags), the speaker
        similarity (0 to 1, as text), its reading in words, a status line (durations,
        real-time factor, seed), the two figures and, when `stream` is true, the live stream
        of the audio as it was made (played by the page as it arrives).
        """
        owner = owner_of(owner_token, profile)
        report = lambda fraction, desc: progress(fraction, desc=desc)  # noqa: E731
        if stream and studio.can_stream:
            live = _LiveBuffer(SAMPLE_RATE)
            for item in studio.clone_stream(reference, voice, text, seed, vocoder, report=report, consent=consent,
                                            owner=owner, pace=pace, file_format=file_format, loudness=loudness,
                                            clean=clean, pitch=pitch):
                if isinstance(item, np.ndarray):
                    piece = live.add(item)
                    if piece is not None:
                        yield (*[gr.skip()] * 6, piece)
                else:
                    out = item
            rest = live.flush()
            if rest is not None:
                yield (*[gr.skip()] * 6, rest)
            final_live = gr.skip()
        else:
            out = studio.clone(reference, voice, text, seed, vocoder, report=report, consent=consent, owner=owner,
                               pace=pace, file_format=file_format, loudness=loudness, clean=clean, pitch=pitch)
            final_live = None
        score = "n/a" if out.similarity is None else f"{out.similarity:.3f}"
        yield (str(out.wav_path), score, out.reading, out.status, out.mel_plot, out.embeddings_plot, final_live)

    clone = _user_errors(clone_steps)  # the API's /clone: a failed request raises, with its message

    def clone_on_page(reference, voice, text, seed, vocoder, stream=False, consent=False, owner_token=None,
                      pace=1.0, file_format="wav", loudness=None, clean=False, pitch=0.0,
                      profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """The page's Synthesize: a failed request shows one clear message where the result goes."""
        try:
            for item in clone_steps(reference, voice, text, seed, vocoder, stream, consent, owner_token, pace,
                                    file_format, loudness, clean, pitch, profile=profile, progress=progress):
                yield (gr.update(value="", visible=False), *item)
        except Exception as exc:
            error = _as_user_error(exc, "clone")
            text = f"**{error.title or 'Error'}**: {error.message}"
            yield (gr.update(value=text, visible=True), None, "", "", "", None, None, None)

    @_user_errors
    def save_voice(name, reference, consent=False, owner_token=None, more_clips=None, clean=False,
                   profile: gr.OAuthProfile | None = None):
        """Save the `reference` recording (and up to 9 `more_clips` of the same speaker) in your library as
        `name` (needs `consent` true). The voice's embedding is the normalised mean of the clips'."""
        owner = owner_of(owner_token, profile)
        saved = studio.save_voice(name, reference, consent=consent, owner=owner, more_clips=more_clips or (),
                                  clean=clean)
        clips = studio.voice_clips(saved, owner)
        return (gr.update(choices=voice_choices(owner), value=saved),
                f"Saved **{saved}** from {len(clips)} recording{'s' if len(clips) != 1 else ''}.", "", None, clips)

    @_user_errors
    def add_clip(voice, reference, consent=False, owner_token=None, clean=False,
                 profile: gr.OAuthProfile | None = None):
        """Add the `reference` recording to your saved voice `voice` (needs `consent` true)."""
        owner = owner_of(owner_token, profile)
        name = studio.add_clip(voice, reference, consent=consent, owner=owner, clean=clean)
        clips = studio.voice_clips(name, owner)
        return f"Added a recording to **{name}** ({len(clips)} now).", clips

    @_user_errors
    def voice_clips(voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Each recording of your saved voice `voice` and its similarity to the voice (an odd one scores low)."""
        try:
            return studio.voice_clips(voice, owner_of(owner_token, profile))
        except VoiceError:
            return []

    @_user_errors
    def delete_voice(voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Delete your saved voice called `voice`."""
        owner = owner_of(owner_token, profile)
        deleted = studio.delete_voice(voice, owner=owner)
        return gr.update(choices=voice_choices(owner), value=""), f"Deleted **{deleted}**."

    def show_voice(voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The saved voice's preview; hidden while the name typed is not (yet) a saved voice."""
        try:
            return gr.update(value=str(studio.voice_preview(voice, owner=owner_of(owner_token, profile))),
                             visible=True)
        except DeepfakeAudioError:
            return gr.update(value=None, visible=False)

    def start_session(owner_token, voice, profile: gr.OAuthProfile | None = None):
        """On page load: make the browser's owner token if it has none, and list its voices."""
        token = owner_token if owners.valid_token(owner_token) else owners.new_token()
        names = studio.voice_names(owner_of(token, profile))
        return token, gr.update(choices=voice_choices(owner_of(token, profile)), value=voice if voice in names else "")

    @_user_errors
    def voice_map(owner_token=None, profile: gr.OAuthProfile | None = None):
        """The map of your saved voices and recent results, and its table."""
        figure, rows = studio.voice_map(owner=owner_of(owner_token, profile))
        return figure, rows

    @_user_errors
    def clear_results(owner_token=None, profile: gr.OAuthProfile | None = None):
        """Forget your generated results (saved voices stay)."""
        studio.library(owner_of(owner_token, profile)).results.clear()
        return voice_map(owner_token, profile)

    @_user_errors
    def run_batch(batch_file, batch_voice, file_format="wav", loudness=None, pace=1.0, owner_token=None,
                  pitch=0.0, profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Clone a .txt (one file per paragraph) or .csv (voice,text[,file]) into a ZIP of audio files and a
        manifest; rows without a voice use your saved voice `batch_voice`. `pace` and `pitch` (semitones)
        apply to every file."""
        out = studio.batch(batch_file, batch_voice, file_format=file_format, loudness=loudness, pace=pace,
                           owner=owner_of(owner_token, profile), pitch=pitch,
                           report=lambda fraction, desc: progress(fraction, desc=desc))
        return str(out), f"**{out.name}** is ready: the audio files and `manifest.csv`."

    @_user_errors
    def batch_voices(owner_token=None, profile: gr.OAuthProfile | None = None):
        names = studio.voice_names(owner_of(owner_token, profile))
        return gr.update(choices=names, value=names[0] if names else None)

    def history_rows(owner_token=None, profile: gr.OAuthProfile | None = None):
        entries = studio.recent(owner_of(owner_token, profile))
        rows = [[e.number, time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)), e.voice, round(e.seconds, 1),
                 e.file.suffix.lstrip(".").upper(), e.text] for e in entries]
        choices = [(f"#{e.number} · {e.voice} · {e.text[:40]}", e.number) for e in entries]
        return rows, choices

    @_user_errors
    def show_history(owner_token=None, profile: gr.OAuthProfile | None = None):
        """Your recent results (newest first): number, time, voice, seconds, format and text."""
        rows, choices = history_rows(owner_token, profile)
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None)

    @_user_errors
    def play_history(number, owner_token=None, profile: gr.OAuthProfile | None = None):
        """One recent result's file, to replay and download."""
        if number is None or number == "":
            return None
        try:
            number = int(str(number).strip().lstrip("#"))
        except ValueError:
            raise RequestError(f"A result is picked by its number (as /history lists them), not {number!r}.") \
                from None
        entry = studio.library(owner_of(owner_token, profile)).history.get(number)
        return str(studio.copy_for_page(entry.file))

    def restore_options(prefs):
        """The remembered options, each only where it is still a valid choice; the sections' open state."""
        prefs = prefs if isinstance(prefs, dict) else {}
        valid = {
            "seed": lambda v: isinstance(v, (int, float)) and 0 <= v <= MAX_SEED,
            "vocoder": lambda v: v in [value for _, value in studio.vocoder_choices()],
            "pace": lambda v: isinstance(v, (int, float)) and 0.5 <= v <= 2.0,
            "pitch": lambda v: isinstance(v, (int, float)) and abs(v) <= MAX_PITCH_SEMITONES,
            "file_format": lambda v: v in ("wav", "flac", "mp3", "ogg"),
            "loudness": lambda v: v in [value for _, value in LOUDNESS_CHOICES],
            "clean": lambda v: isinstance(v, bool),
            "stream": lambda v: isinstance(v, bool) and studio.can_stream,
        }
        values = [prefs[k] if k in prefs and valid[k](prefs[k]) else gr.skip() for k in REMEMBERED]
        return (*values, *(gr.Accordion(open=bool(prefs.get(k, False))) for k in ("options_open", "save_open")))

    def remember_options(prefs, *values):
        return {**(prefs if isinstance(prefs, dict) else {}), **dict(zip(REMEMBERED, values))}

    def voices(owner_token: str | None = None) -> list[str]:
        """Names of your saved voices, for the `voice` argument of /clone (`owner_token` where voices are private)."""
        try:
            return studio.voice_names(owner_of(owner_token, None))
        except DeepfakeAudioError as exc:
            raise _as_user_error(exc, "voices") from None

    @_user_errors
    def check_audio(file):
        """Whether an audio file (WAV, FLAC, MP3, OGG) carries this studio's watermark, with its score and
        provenance tags."""
        if not file:
            raise AudioError("Upload an audio file to check.")
        found = check_file(file, name=Path(file).name)
        tags = "".join(f"\n| {name} | {html.escape(value)} |" for name, value in found.provenance.items())
        table = f"\n\n| tag | value |\n|---|---|{tags}" if tags else "\n\nNo provenance tags in the file."
        return f"**{found.verdict}**{table}", found.score

    heavy = dict(concurrency_id="models", concurrency_limit=clone_concurrency)
    with gr.Blocks(title=TITLE, delete_cache=UPLOAD_CACHE) as demo:
        owner_token = gr.BrowserState(None, storage_key="deepfake-audio-owner")
        prefs = gr.BrowserState({}, storage_key="deepfake-audio-options")  # see REMEMBERED
        gr.Markdown(INTRO, elem_id="intro")
        if studio.private and os.environ.get("OAUTH_CLIENT_ID"):  # a Space with sign-in: voices follow the account
            gr.LoginButton()
        notice = studio.weights_notice()
        # Without a synthesizer nothing can be cloned: say so first. The starter's note goes under the result.
        notice_first = bool(notice) and not studio.has_synthesizer
        if notice_first:
            gr.Markdown(notice, elem_id="weights-notice")
        # Made here, shown in the second column: the example voices fill them in from the first.
        text = gr.Textbox(label="Text to say", lines=3, max_lines=14, elem_id="text-input", render=False,
                          placeholder="What the voice should say (Ctrl+Enter synthesizes). [pause 1.5] adds "
                                      "silence; a line starting [voice: Name] is spoken by the saved voice Name.")
        consent = gr.Checkbox(label="I have the speaker's permission to clone this voice", value=False,
                              elem_id="consent", render=False)
        with gr.Tabs():
            with gr.Tab("Clone", id="clone"):
                # Three columns on a wide screen (voice | text, options, Synthesize | result); stacked in
                # that order on a phone, so the result comes right under Synthesize.
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=300):
                        reference = gr.Audio(label="Reference voice: 5-10 s of clear speech",
                                             sources=["upload", "microphone"], type="filepath", editable=True,
                                             elem_id="reference-audio")
                        voice = gr.Dropdown(label="Or a saved voice", choices=[RECORDING_CHOICE], value="",
                                            allow_custom_value=True, elem_id="voice-choice")
                        preview = gr.Audio(label="Saved voice preview", interactive=False, visible=False,
                                           elem_id="voice-preview")
                        examples = example_voices()
                        if examples:
                            # Synthetic speakers whose licences allow it: the consent box is ticked for them.
                            gr.Examples([[str(e.path), e.text, True, RECORDING_CHOICE[1]] for e in examples],
                                        [reference, text, consent, voice], elem_id="example-voices",
                                        label="Example voices (synthetic, free to use)",
                                        example_labels=[e.label for e in examples], examples_per_page=6)
                        with gr.Accordion("Save, extend or delete this voice", open=False,
                                          elem_id="save-section") as save_section:
                            more_clips = gr.File(label="More recordings of the same voice (optional, up to 9)",
                                                 file_count="multiple", file_types=["audio"], type="filepath",
                                                 elem_id="more-clips")
                            with gr.Row(equal_height=True):
                                voice_name = gr.Textbox(show_label=False, placeholder="Name for the recording",
                                                        max_lines=1, scale=3, min_width=140, container=False,
                                                        elem_id="voice-name")
                                save_button = gr.Button("Save voice", size="md", scale=1, min_width=100,
                                                        elem_id="save-voice")
                                delete_button = gr.Button("Delete voice", variant="stop", size="md", scale=1,
                                                          min_width=100, elem_id="delete-voice")
                            add_clip_button = gr.Button("Add the recording above to the chosen voice", size="sm",
                                                        elem_id="add-clip")
                            clips_table = gr.Dataframe(headers=["recording", "similarity to the voice"],
                                                       datatype=["number", "number"], interactive=False,
                                                       elem_id="voice-clips", label="Recordings of this voice")
                        library_status = gr.Markdown(elem_id="library-status")
                    with gr.Column(scale=1, min_width=300):
                        text.render()
                        count = gr.Markdown(f"0 / {MAX_TEXT_CHARS} characters", elem_id="char-count")
                        with gr.Accordion("Options", open=False, elem_id="options") as options_section:
                            with gr.Row():
                                seed = gr.Number(label="Seed", value=0, precision=0, min_width=120, elem_id="seed",
                                                 info=f"0 to {MAX_SEED}. Same seed, voice and text: same audio.")
                                vocoder = gr.Radio(label="Vocoder", choices=studio.vocoder_choices(),
                                                   value=studio.default_vocoder, min_width=200, elem_id="vocoder")
                            with gr.Row():
                                pace = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speaking rate",
                                                 info="1 is the voice's own pace; 0.5 half as fast, 2 twice as fast",
                                                 elem_id="pace")
                                pitch = gr.Slider(-MAX_PITCH_SEMITONES, MAX_PITCH_SEMITONES, value=0, step=0.5,
                                                  label="Pitch (semitones)", elem_id="pitch",
                                                  info="0 is the voice's own; +12 an octave up, -12 an octave down")
                            with gr.Row():
                                file_format = gr.Dropdown(label="File", choices=[("WAV (16-bit)", "wav"),
                                                                                 ("FLAC", "flac"), ("MP3", "mp3"),
                                                                                 ("OGG/Opus", "ogg")],
                                                          value="wav", min_width=120, elem_id="file-format")
                                loudness = gr.Dropdown(label="Loudness", choices=LOUDNESS_CHOICES, value="",
                                                       min_width=160, elem_id="loudness",
                                                       info="EBU R128 target for the file")
                            clean = gr.Checkbox(label="Clean up the recording (reduce noise, keep the voice band)",
                                                value=False, elem_id="clean-up",
                                                info="On by itself after a microphone recording")
                            stream = gr.Checkbox(label="Play while generating", value=studio.can_stream,
                                                 visible=studio.can_stream, elem_id="stream-toggle",
                                                 info="Hear the first words while the rest is still being made")
                        consent.render()
                        synthesize = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
                    with gr.Column(scale=1, min_width=300):
                        live = gr.Audio(label="Live playback", streaming=True, autoplay=True, interactive=False,
                                        visible=studio.can_stream, elem_id="live-audio")
                        message = gr.Markdown(visible=False, elem_id="result-message")
                        output = gr.Audio(label="Cloned speech", type="filepath", interactive=False,
                                          buttons=["download"], elem_id="output-audio")
                        similarity = gr.Textbox(label="Speaker similarity (cosine of encoder embeddings, 0 to 1)",
                                                interactive=False, max_lines=1, elem_id="similarity")
                        reading = gr.Markdown(elem_id="similarity-reading")
                        status = gr.Markdown(elem_id="run-status")
                        mel_plot = gr.Plot(label="Mel spectrogram", show_label=False, format="png", elem_id="mel-plot")
                        embedding_plot = gr.Plot(label="Speaker embeddings", show_label=False, format="png",
                                                 elem_id="embedding-plot")
                        if notice and not notice_first:  # the starter's note: after the result on a phone too
                            gr.Markdown(notice, elem_id="weights-notice")
            with gr.Tab("Voices", id="voices") as voices_tab:
                gr.Markdown(MAP_HELP)
                map_plot = gr.Plot(label="Voice map", show_label=False, format="png", elem_id="voice-map")
                map_table = gr.Dataframe(headers=["name", "kind", "similarity to source"],
                                         datatype=["str", "str", "number"], interactive=False,
                                         elem_id="voice-table")
                with gr.Row():
                    refresh_button = gr.Button("Refresh map", elem_id="refresh-map")
                    clear_button = gr.Button("Forget generated results", variant="secondary",
                                             elem_id="clear-results")
            with gr.Tab("Batch", id="batch") as batch_tab:
                gr.Markdown(BATCH_HELP)
                with gr.Row():
                    with gr.Column():
                        batch_file = gr.File(label="Text (.txt) or table (.csv)", file_types=[".txt", ".csv"],
                                             type="filepath", elem_id="batch-file")
                        # custom values: a script names a saved voice without opening the tab first
                        # (the studio checks the name itself)
                        batch_voice = gr.Dropdown(label="Voice for rows without one", choices=[],
                                                  elem_id="batch-voice", allow_custom_value=True,
                                                  info="One of your saved voices (save it on the Clone tab)")
                        with gr.Row():
                            batch_format = gr.Dropdown(label="File", choices=[("WAV (16-bit)", "wav"),
                                                                              ("FLAC", "flac"), ("MP3", "mp3"),
                                                                              ("OGG/Opus", "ogg")], value="wav",
                                                       elem_id="batch-format")
                            batch_loudness = gr.Dropdown(label="Loudness", choices=LOUDNESS_CHOICES, value="",
                                                         elem_id="batch-loudness")
                        batch_button = gr.Button("Clone the batch", variant="primary", elem_id="batch-run")
                    with gr.Column():
                        batch_zip = gr.File(label="ZIP of audio files and manifest", interactive=False,
                                            elem_id="batch-zip")
                        batch_status = gr.Markdown(elem_id="batch-status")
            with gr.Tab("History", id="history") as history_tab:
                gr.Markdown("Your last 20 results, newest first: pick one to play it again or download it.")
                history_table = gr.Dataframe(headers=["#", "made", "voice", "seconds", "file", "text"],
                                             datatype=["number", "str", "str", "number", "str", "str"],
                                             interactive=False, elem_id="history-table")
                history_pick = gr.Dropdown(label="Result", choices=[], elem_id="history-pick",
                                           allow_custom_value=True)  # a script passes a number directly
                history_audio = gr.Audio(label="Result", type="filepath", interactive=False, buttons=["download"],
                                         elem_id="history-audio")
            with gr.Tab("Check audio", id="check"):
                gr.Markdown(CHECK_HELP)
                checked_file = gr.File(label="Audio file (WAV, FLAC, MP3, OGG)", file_types=["audio"],
                                       type="filepath", elem_id="check-file")
                check_button = gr.Button("Check for the watermark", elem_id="check-audio")
                check_verdict = gr.Markdown(elem_id="check-verdict")
                check_score = gr.Number(label="Watermark score (0 to 1; 0.5 and above: watermarked)",
                                        interactive=False, elem_id="check-score")
            with gr.Tab("Models", id="models"):
                gr.Markdown("\n".join(f"- **{stage}**: {where}" for stage, where in studio.public_weights().items()))

        text.change(None, inputs=text, outputs=count, js=COUNT_JS)
        clone_inputs = [reference, voice, text, seed, vocoder, stream, consent, owner_token, pace, file_format, loudness,
                        clean, pitch]
        clone_outputs = [output, similarity, reading, status, mel_plot, embedding_plot, live]
        synthesize.click(clone_on_page, clone_inputs, [message, *clone_outputs], api_visibility="private",
                         scroll_to_output=True, show_progress_on=clone_outputs[:1], **heavy)
        # The same request for API clients, where a failure must raise: a button the page never shows.
        api_clone = gr.Button(visible=False, elem_id="api-clone")
        api_clone.click(clone, clone_inputs, clone_outputs, api_name="clone", **heavy)
        save_button.click(save_voice, [voice_name, reference, consent, owner_token, more_clips, clean],
                          [voice, library_status, voice_name, more_clips, clips_table], api_name="save_voice", **heavy)
        add_clip_button.click(add_clip, [voice, reference, consent, owner_token, clean], [library_status, clips_table],
                              api_name="add_clip", **heavy)
        voice.change(voice_clips, [voice, owner_token], clips_table, api_name="voice_clips", show_progress="hidden")
        # A microphone recording gets the clean-up by default; an uploaded file does not.
        reference.stop_recording(lambda: True, None, clean, api_visibility="private", show_progress="hidden")
        reference.upload(lambda: False, None, clean, api_visibility="private", show_progress="hidden")
        delete_button.click(delete_voice, [voice, owner_token], [voice, library_status], api_name="delete_voice")
        voice.change(show_voice, [voice, owner_token], preview, api_visibility="private", show_progress="hidden")
        demo.load(start_session, [owner_token, voice], [owner_token, voice], api_visibility="private",
                  show_progress="hidden")
        # The browser remembers the options and which sections were open.
        remembered = [seed, vocoder, pace, pitch, file_format, loudness, clean, stream]
        sections = {"options_open": options_section, "save_open": save_section}
        private = dict(api_visibility="private", show_progress="hidden", queue=False)
        demo.load(restore_options, prefs, remembered + list(sections.values()), **private)
        for component in remembered:
            component.change(remember_options, [prefs, *remembered], prefs, **private)
        for key, section in sections.items():
            section.expand(lambda p, key=key: {**(p or {}), key: True}, prefs, prefs, **private)
            section.collapse(lambda p, key=key: {**(p or {}), key: False}, prefs, prefs, **private)
        refresh_button.click(voice_map, owner_token, [map_plot, map_table], api_name="voice_map")
        voices_tab.select(voice_map, owner_token, [map_plot, map_table], api_name="voices_tab",
                          api_visibility="private")
        clear_button.click(clear_results, owner_token, [map_plot, map_table], api_name="clear_results")
        check_button.click(check_audio, checked_file, [check_verdict, check_score], api_name="detect", **heavy)
        batch_tab.select(batch_voices, owner_token, batch_voice, api_visibility="private", show_progress="hidden")
        batch_button.click(run_batch, [batch_file, batch_voice, batch_format, batch_loudness, pace, owner_token, pitch],
                           [batch_zip, batch_status], api_name="batch", **heavy)
        history_tab.select(show_history, owner_token, [history_table, history_pick], api_name="history")
        history_pick.change(play_history, [history_pick, owner_token], history_audio, api_name="history_file")
        gr.api(voices, api_name="voices")
    return demo


class _LiveBuffer:
    """Groups the stream's pieces into playable chunks: the first after 0.25 s of audio, then 0.5 s each.

    Every chunk becomes one encoded segment on the page, so tiny pieces would cost more
    in overhead than they gain in latency.
    """

    FIRST_SECONDS, NEXT_SECONDS = 0.25, 0.5

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.pieces: list[np.ndarray] = []
        self.samples = 0
        self.sent = 0

    def add(self, audio: np.ndarray) -> tuple[int, np.ndarray] | None:
        self.pieces.append(audio)
        self.samples += len(audio)
        wanted = self.FIRST_SECONDS if self.sent == 0 else self.NEXT_SECONDS
        return self.flush() if self.samples >= wanted * self.sample_rate else None

    def flush(self) -> tuple[int, np.ndarray] | None:
        if not self.samples:
            return None
        audio = np.concatenate(self.pieces)
        self.pieces, self.samples = [], 0
        self.sent += 1
        return self.sample_rate, (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def shell_version() -> str:
    """Short hash of the PWA shell files and the Gradio release: the service worker's cache version."""
    digest = hashlib.sha256(gr.__version__.encode())
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file() and p.suffix != ".py"):
        digest.update(path.relative_to(STATIC).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def create_app(studio: Studio, *, clone_concurrency: int | None = None, queue_size: int = DEFAULT_QUEUE_SIZE) -> FastAPI:
    """FastAPI app serving the PWA files, with the studio's Gradio UI mounted at the root."""
    if clone_concurrency is None:
        clone_concurrency = default_concurrency(studio)
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)
    no_cache = {"Cache-Control": "no-cache"}
    worker = (STATIC / "sw.js").read_text(encoding="utf-8").replace("__SHELL_VERSION__", shell_version())

    # Declared before Gradio is mounted, so these answer instead of Gradio's own routes.
    @app.get("/manifest.json", include_in_schema=False)
    def manifest():
        return FileResponse(STATIC / "manifest.json", media_type="application/manifest+json", headers=no_cache)

    @app.get("/sw.js", include_in_schema=False)
    def service_worker():
        return Response(worker, media_type="text/javascript",
                        headers={**no_cache, "Service-Worker-Allowed": "/"})

    @app.get("/offline.html", include_in_schema=False)
    def offline_page():
        return FileResponse(STATIC / "offline.html", media_type="text/html", headers=no_cache)

    app.mount("/pwa/icons", StaticFiles(directory=STATIC / "icons"), name="pwa-icons")
    # Outermost last: the key is checked first, then body sizes and upload quotas.
    app.add_middleware(RequestLimits)
    # With $DEEPFAKE_AUDIO_API_KEY set, nothing but the PWA shell answers without the key.
    app.add_middleware(ApiKeyGuard)
    # OpenAI-compatible speech API (deepfake_audio.http_api), beside the studio's own Gradio API.
    speech = speech_router(studio, clone_concurrency)
    app.include_router(speech)
    app.state.speech_slots = speech.slots

    demo = build_ui(studio, clone_concurrency)
    demo.queue(max_size=queue_size, default_concurrency_limit=max(2, clone_concurrency))
    app.state.blocks = demo
    return gr.mount_gradio_app(
        app, demo, path="/", theme=gr.themes.Soft(primary_hue="teal", neutral_hue="slate"), css=CSS, head=HEAD,
        favicon_path=str(STATIC / "icons" / "favicon.png"),
        allowed_paths=[str(studio.output_dir)],
        max_file_size="50mb", footer_links=["api", "settings"], run_history=False, ssr_mode=False,
        pwa=False, show_error=True, mcp_server=False)


def default_concurrency(studio: Studio) -> int:
    """Clones at once: $DEEPFAKE_AUDIO_CONCURRENCY, else 1 on CPU (one clone already uses every core), 2 on a GPU."""
    if os.environ.get("DEEPFAKE_AUDIO_CONCURRENCY"):
        return max(1, int(os.environ["DEEPFAKE_AUDIO_CONCURRENCY"]))
    return 2 if studio.pipeline.device.type == "cuda" else 1


def in_container() -> bool:
    """True in a Hugging Face Space or a Docker container, where the server must listen on every interface."""
    return bool(os.environ.get("SPACE_ID")) or Path("/.dockerenv").exists()


def server_address(host: str | None, port: int | None) -> tuple[str, int]:
    """--host/--port, else $GRADIO_SERVER_NAME/$GRADIO_SERVER_PORT, else $HOST/$PORT, else a default."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or os.environ.get("HOST") \
        or ("0.0.0.0" if in_container() else "127.0.0.1")
    if port is None:
        raw = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or DEFAULT_PORT
        try:
            port = int(raw)
        except ValueError:
            raise SystemExit(f"error: the port must be a number, got {raw!r}") from None
    return host, port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"{TITLE}: voice cloning in the browser.")
    parser.add_argument("--host", default=None,
                        help="interface to listen on (default: $GRADIO_SERVER_NAME or $HOST, else 127.0.0.1; "
                             "0.0.0.0 in Docker and on Spaces)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default: $GRADIO_SERVER_PORT or $PORT, else {DEFAULT_PORT})")
    parser.add_argument("--models", type=Path, default=None, metavar="DIR",
                        help="folder with synthesizer.pt and vocoder.pt (and optionally encoder.pt); "
                             "default: $DEEPFAKE_AUDIO_MODELS or saved_models/default")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="where saved voices live (default: $DEEPFAKE_AUDIO_DATA, /data/deepfake-audio "
                             "on a Space with storage, else ./studio_data)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--mode", choices=MODES, default=os.environ.get("DEEPFAKE_AUDIO_MODE", "fast"),
                        help="inference mode of every request: fast (default: int8 weights, the fastest that "
                             "sounds like the reference), int8, fp16 (the default before 2026-12), or parity "
                             "(the reference's exact numbers, slow); or $DEEPFAKE_AUDIO_MODE")
    parser.add_argument("--private-libraries", action=argparse.BooleanOptionalAction, default=None,
                        help="give every visitor their own saved voices and results (default: on in a Hugging "
                             "Face Space, off for a local single-user install; or "
                             "$DEEPFAKE_AUDIO_PRIVATE_LIBRARIES=1)")
    parser.add_argument("--fetch-weights", action=argparse.BooleanOptionalAction,
                        default=_env_flag("DEEPFAKE_AUDIO_FETCH_WEIGHTS", default=bool(os.environ.get("SPACE_ID"))),
                        help="download missing official checkpoints before starting (default: on in a "
                             "Hugging Face Space, else off; or $DEEPFAKE_AUDIO_FETCH_WEIGHTS=1)")
    parser.add_argument("--queue-size", type=int, default=int(os.environ.get("DEEPFAKE_AUDIO_QUEUE_SIZE",
                                                                             DEFAULT_QUEUE_SIZE)),
                        help=f"requests that may wait in the queue (default {DEFAULT_QUEUE_SIZE})")
    return parser


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = server_address(args.host, args.port)
    if args.fetch_weights:
        try:
            fetched = fetch_missing_weights(args.models)
            logger.info("fetched %s", ", ".join(fetched) if fetched else "nothing: every checkpoint is present")
        except DeepfakeAudioError as exc:  # start anyway: the page says what is missing
            logger.warning("could not fetch the weights: %s", exc)
    try:
        studio = Studio(args.models, args.data, device=args.device, warm_up=True, private=args.private_libraries,
                        mode=args.mode)
    except DeepfakeAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for stage, where in studio.describe_weights().items():
        logger.info("%s: %s", stage, where)
    logger.info("saved voices in %s (%s)", studio.data_dir,
                "private: one library per visitor" if studio.private else "one library for everyone")
    app = create_app(studio, queue_size=args.queue_size)
    import uvicorn
    logger.info("studio at http://%s:%d/", "localhost" if host in ("0.0.0.0", "::") else host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
