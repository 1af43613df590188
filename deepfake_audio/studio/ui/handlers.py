"""The studio's event handlers: what every button does, and the public Gradio API.

Each public method here is one endpoint (or a page-only event) and keeps its
parameters in the API's order: `gradio_client` scripts call them by name (/clone,
/save_voice, /voices, ...; see the README), and Gradio documents them from these
signatures and docstrings. Every handler that touches saved voices or results takes the
owner token the page keeps in the browser (and the signed-in account on a Space with
sign-in): see `deepfake_audio.studio.owners`. A single-user studio ignores both.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import gradio as gr
import numpy as np

from deepfake_audio_core.errors import AudioError, DeepfakeAudioError, RequestError
from deepfake_audio.pipeline import SAMPLE_RATE
from deepfake_audio_core.requests import MAX_PITCH_SEMITONES
from deepfake_audio.studio import owners
from deepfake_audio.studio.examples import example_reference
from deepfake_audio.studio.library import VoiceError
from deepfake_audio.studio.service import MAX_SEED, Studio
from deepfake_audio.studio.ui.errors import as_user_error, user_errors
from deepfake_audio.studio.ui.live import LiveBuffer
from deepfake_audio.watermark import check_file

RECORDING_CHOICE = ("The recording above", "")
FILE_FORMAT_CHOICES = [("WAV (16-bit)", "wav"), ("FLAC", "flac"), ("MP3", "mp3"), ("OGG/Opus", "ogg")]
LOUDNESS_CHOICES = [("As made (0.97 peak)", ""), ("-16 LUFS (podcasts, web)", "-16"),
                    ("-23 LUFS (broadcast, EBU R128)", "-23")]
# Options and open sections of the Clone tab that the browser remembers (localStorage), by key.
REMEMBERED = ("seed", "vocoder", "pace", "pitch", "file_format", "loudness", "clean", "stream")
SECTIONS = ("options_open", "save_open")


def _is_number(value) -> bool:
    return isinstance(value, (int, float))


class Handlers:
    """The Gradio event functions of one studio, bound to it; `heavy` queues the model-bound events."""

    def __init__(self, studio: Studio, clone_concurrency: int = 1):
        self.studio = studio
        # Events that run the models share one concurrency group, `clone_concurrency` at once.
        self.heavy = dict(concurrency_id="models", concurrency_limit=clone_concurrency)

    def owner_of(self, token, profile) -> str | None:
        """The owner a request acts for: None in a single-user studio."""
        if not self.studio.private:
            return None
        return owners.owner_id(token, getattr(profile, "username", None) if profile else None)

    def voice_choices(self, owner) -> list[tuple[str, str]]:
        """The voice dropdown's choices: the recording, then the owner's saved voices."""
        return [RECORDING_CHOICE] + [(name, name) for name in self.studio.voice_names(owner)]

    # Cloning

    def clone_steps(self, reference, voice, text, seed, vocoder, stream=False, consent=False, owner_token=None,
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
        request = dict(report=lambda fraction, desc: progress(fraction, desc=desc), consent=consent,
                       owner=self.owner_of(owner_token, profile), pace=pace, file_format=file_format,
                       loudness=loudness, clean=clean, pitch=pitch)
        reference = example_reference(reference)  # an example clicked a moment ago: its name, not yet its file
        if stream and self.studio.can_stream:
            live = LiveBuffer(SAMPLE_RATE)
            for item in self.studio.clone_stream(reference, voice, text, seed, vocoder, **request):
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
            out = self.studio.clone(reference, voice, text, seed, vocoder, **request)
            final_live = None
        score = "n/a" if out.similarity is None else f"{out.similarity:.3f}"
        yield (str(out.wav_path), score, out.reading, out.status, out.mel_plot, out.embeddings_plot, final_live)

    clone = user_errors(clone_steps)  # the API's /clone: a failed request raises, with its message

    def clone_on_page(self, reference, voice, text, seed, vocoder, stream=False, consent=False, owner_token=None,
                      pace=1.0, file_format="wav", loudness=None, clean=False, pitch=0.0,
                      profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """The page's Synthesize: a failed request shows one clear message where the result goes."""
        try:
            for item in self.clone_steps(reference, voice, text, seed, vocoder, stream, consent, owner_token, pace,
                                         file_format, loudness, clean, pitch, profile=profile, progress=progress):
                yield (gr.update(value="", visible=False), *item)
        except Exception as exc:
            error = as_user_error(exc, "clone")
            text = f"**{error.title or 'Error'}**: {error.message}"
            yield (gr.update(value=text, visible=True), None, "", "", "", None, None, None)

    # Saved voices

    @user_errors
    def save_voice(self, name, reference, consent=False, owner_token=None, more_clips=None, clean=False,
                   profile: gr.OAuthProfile | None = None):
        """Save the `reference` recording (and up to 9 `more_clips` of the same speaker) in your library as
        `name` (needs `consent` true). The voice's embedding is the normalised mean of the clips'."""
        owner = self.owner_of(owner_token, profile)
        saved = self.studio.save_voice(name, reference, consent=consent, owner=owner, more_clips=more_clips or (),
                                       clean=clean)
        clips = self.studio.voice_clips(saved, owner)
        said = " ".join([f"Saved **{saved}** from {len(clips)} recording{'s' if len(clips) != 1 else ''}.",
                         *self.studio.recording_notes(saved, owner)])
        return gr.update(choices=self.voice_choices(owner), value=saved), said, "", None, clips

    @user_errors
    def add_clip(self, voice, reference, consent=False, owner_token=None, clean=False,
                 profile: gr.OAuthProfile | None = None):
        """Add the `reference` recording to your saved voice `voice` (needs `consent` true)."""
        owner = self.owner_of(owner_token, profile)
        name = self.studio.add_clip(voice, reference, consent=consent, owner=owner, clean=clean)
        clips = self.studio.voice_clips(name, owner)
        return " ".join([f"Added a recording to **{name}** ({len(clips)} now).",
                         *self.studio.recording_notes(name, owner, last=True)]), clips

    @user_errors
    def voice_clips(self, voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Each recording of your saved voice `voice` and its similarity to the voice (an odd one scores low)."""
        try:
            return self.studio.voice_clips(voice, self.owner_of(owner_token, profile))
        except VoiceError:
            return []

    @user_errors
    def delete_voice(self, voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Delete your saved voice called `voice`."""
        owner = self.owner_of(owner_token, profile)
        deleted = self.studio.delete_voice(voice, owner=owner)
        return gr.update(choices=self.voice_choices(owner), value=""), f"Deleted **{deleted}**."

    def show_voice(self, voice, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The saved voice's preview; hidden while the name typed is not (yet) a saved voice."""
        try:
            preview = self.studio.voice_preview(voice, owner=self.owner_of(owner_token, profile))
            return gr.update(value=str(preview), visible=True)
        except DeepfakeAudioError:
            return gr.update(value=None, visible=False)

    def start_session(self, owner_token, voice, profile: gr.OAuthProfile | None = None):
        """On page load: make the browser's owner token if it has none, and list its voices."""
        token = owner_token if owners.valid_token(owner_token) else owners.new_token()
        names = self.studio.voice_names(self.owner_of(token, profile))
        return token, gr.update(choices=self.voice_choices(self.owner_of(token, profile)),
                                value=voice if voice in names else "")

    def voices(self, owner_token: str | None = None) -> list[str]:
        """Names of your saved voices, for the `voice` argument of /clone (`owner_token` where voices are private)."""
        try:
            return self.studio.voice_names(self.owner_of(owner_token, None))
        except DeepfakeAudioError as exc:
            raise as_user_error(exc, "voices") from None

    # The voice map

    @user_errors
    def voice_map(self, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The map of your saved voices and recent results, and its table."""
        figure, rows = self.studio.voice_map(owner=self.owner_of(owner_token, profile))
        return figure, rows

    @user_errors
    def clear_results(self, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Forget your generated results (saved voices stay)."""
        self.studio.library(self.owner_of(owner_token, profile)).results.clear()
        return self.voice_map(owner_token, profile)

    # Batches

    @user_errors
    def run_batch(self, batch_file, batch_voice, file_format="wav", loudness=None, pace=1.0, owner_token=None,
                  pitch=0.0, profile: gr.OAuthProfile | None = None, progress=gr.Progress()):
        """Clone a .txt (one file per paragraph) or .csv (voice,text[,file]) into a ZIP of audio files and a
        manifest; rows without a voice use your saved voice `batch_voice`. `pace` and `pitch` (semitones)
        apply to every file."""
        out = self.studio.batch(batch_file, batch_voice, file_format=file_format, loudness=loudness, pace=pace,
                                owner=self.owner_of(owner_token, profile), pitch=pitch,
                                report=lambda fraction, desc: progress(fraction, desc=desc))
        return str(out), f"**{out.name}** is ready: the audio files and `manifest.csv`."

    @user_errors
    def batch_voices(self, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The batch tab's voice choices: your saved voices, the first one chosen."""
        names = self.studio.voice_names(self.owner_of(owner_token, profile))
        return gr.update(choices=names, value=names[0] if names else None)

    # History

    def history_rows(self, owner_token=None, profile: gr.OAuthProfile | None = None):
        """The history table's rows and the picker's (label, number) choices, newest first."""
        entries = self.studio.recent(self.owner_of(owner_token, profile))
        rows = [[e.number, time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created)), e.voice, round(e.seconds, 1),
                 e.file.suffix.lstrip(".").upper(), e.text] for e in entries]
        choices = [(f"#{e.number} · {e.voice} · {e.text[:40]}", e.number) for e in entries]
        return rows, choices

    @user_errors
    def show_history(self, owner_token=None, profile: gr.OAuthProfile | None = None):
        """Your recent results (newest first): number, time, voice, seconds, format and text."""
        rows, choices = self.history_rows(owner_token, profile)
        return rows, gr.update(choices=choices, value=choices[0][1] if choices else None)

    @user_errors
    def play_history(self, number, owner_token=None, profile: gr.OAuthProfile | None = None):
        """One recent result's file, to replay and download."""
        if number is None or number == "":
            return None
        try:
            number = int(str(number).strip().lstrip("#"))
        except ValueError:
            raise RequestError(f"A result is picked by its number (as /history lists them), not {number!r}.") \
                from None
        entry = self.studio.library(self.owner_of(owner_token, profile)).history.get(number)
        return str(self.studio.copy_for_page(entry.file))

    # Remembered options

    def restore_options(self, prefs):
        """The remembered options, each only where it is still a valid choice; the sections' open state."""
        prefs = prefs if isinstance(prefs, dict) else {}
        valid = {
            "seed": lambda v: _is_number(v) and 0 <= v <= MAX_SEED,
            "vocoder": lambda v: v in [value for _, value in self.studio.vocoder_choices()],
            "pace": lambda v: _is_number(v) and 0.5 <= v <= 2.0,
            "pitch": lambda v: _is_number(v) and abs(v) <= MAX_PITCH_SEMITONES,
            "file_format": lambda v: v in [value for _, value in FILE_FORMAT_CHOICES],
            "loudness": lambda v: v in [value for _, value in LOUDNESS_CHOICES],
            "clean": lambda v: isinstance(v, bool),
            "stream": lambda v: isinstance(v, bool) and self.studio.can_stream,
        }
        values = [prefs[k] if k in prefs and valid[k](prefs[k]) else gr.skip() for k in REMEMBERED]
        # Only ever opens: the sections start closed, and on a busy server this answer can come after
        # the user has opened one, which closing it again would undo.
        return (*values, *(gr.Accordion(open=True) if prefs.get(k) is True else gr.skip() for k in SECTIONS))

    def remember_options(self, prefs, *values):
        """`prefs` with the options' current values (in `REMEMBERED`'s order)."""
        return {**(prefs if isinstance(prefs, dict) else {}), **dict(zip(REMEMBERED, values))}

    # Checking a file

    @user_errors
    def check_audio(self, file):
        """Whether an audio file (WAV, FLAC, MP3, OGG) carries this studio's watermark, with its score and
        provenance tags."""
        if not file:
            raise AudioError("Upload an audio file to check.")
        found = check_file(file, name=Path(file).name)
        tags = "".join(f"\n| {name} | {html.escape(value)} |" for name, value in found.provenance.items())
        table = f"\n\n| tag | value |\n|---|---|{tags}" if tags else "\n\nNo provenance tags in the file."
        return f"**{found.verdict}**{table}", found.score
