"""Saving, extending, listing and deleting an owner's voices (the library's verbs for a request).

A recording may be saved only with the user's consent (the time is kept with the voice);
a voice made from several recordings has the normalised mean of their embeddings.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from deepfake_audio_core.audio_io import load_audio
from deepfake_audio_core.errors import AudioError, RequestError
from deepfake_audio_core.pitch import pitch_stats
from deepfake_audio.pipeline import SAMPLE_RATE, Pipeline
from deepfake_audio.studio.libraries import Libraries
from deepfake_audio.studio.library import MAX_CLIPS, VoiceError, clean_name, mean_embedding
from deepfake_audio.studio.outputs import Outputs


def check_consent(consent) -> None:
    """A recording may be cloned or saved only once the user confirms the speaker's permission."""
    if consent is not True and str(consent).strip().lower() not in ("true", "1", "yes"):
        raise RequestError("Confirm that you have the speaker's permission to clone this voice: tick the consent "
                           "box (from the API: consent=true).")


def saved_voice_pitch(preview: Path) -> float | None:
    """Median F0 (Hz) of a saved voice's preview recording, None when it cannot be measured."""
    try:
        stats = pitch_stats(load_audio(preview, SAMPLE_RATE), SAMPLE_RATE)
    except (OSError, AudioError):
        return None
    return None if stats is None else stats.median_hz


def _given(recording) -> bool:
    """Whether a recording argument names a file (not None, not blank)."""
    return recording is not None and str(recording).strip() != ""


class VoiceService:
    """An owner's saved voices: save, add a recording, compare its recordings, preview, delete."""

    def __init__(self, pipeline: Pipeline, libraries: Libraries, outputs: Outputs):
        self.pipeline = pipeline
        self.libraries = libraries
        self.outputs = outputs

    def save_voice(self, name: str, reference: str | Path | None, *, consent: bool = False,
                   owner: str | None = None, more_clips: Sequence[str | Path] = (), clean: bool = False) -> str:
        """Embed `reference` (and `more_clips` of the same speaker: 1 to 10 recordings in all) and save
        them as `name` in the owner's library, with the time of the user's `consent` (required).
        The voice's embedding is the normalised mean of its clips'. Returns the saved name."""
        name = clean_name(name)
        voices = self.libraries.of(owner).voices
        if name.casefold() in (n.casefold() for n in voices.names()):
            raise VoiceError(f"A voice called {name!r} already exists: choose another name, or delete the saved "
                             "one first.")
        recordings = [r for r in [reference, *(more_clips or ())] if _given(r)]
        if not recordings:
            raise AudioError("No recording to save: upload or record the voice first.")
        if len(recordings) > MAX_CLIPS:
            raise VoiceError(f"A voice is made from at most {MAX_CLIPS} recordings; {len(recordings)} were given.")
        check_consent(consent)
        clips, preview = self._embed_recordings(recordings, clean)
        return voices.save(name, mean_embedding(np.stack(clips)), preview, SAMPLE_RATE, consent=time.time(),
                           clips=clips).name

    def _embed_recordings(self, recordings: list, clean: bool) -> tuple[list[np.ndarray], np.ndarray]:
        """Each recording's embedding, and the first one's prepared audio (the voice's preview)."""
        clips, preview = [], None
        for k, recording in enumerate(recordings, start=1):
            try:
                embedding, wav = self.pipeline.embed(recording, return_wav=True, clean=clean)
            except AudioError as exc:
                if len(recordings) == 1:
                    raise
                raise AudioError(f"Recording {k} of {len(recordings)}: {exc}") from None
            clips.append(embedding)
            preview = wav if preview is None else preview
        return clips, preview

    def add_clip(self, name: str | None, reference: str | Path | None, *, consent: bool = False,
                 owner: str | None = None, clean: bool = False) -> str:
        """Add another recording of the speaker to the saved voice `name`; returns its name."""
        if not (name or "").strip():
            raise VoiceError("Choose the saved voice to add the recording to.")
        voices = self.libraries.of(owner).voices
        voices.get(name)  # an unknown voice is the first thing to say
        if not _given(reference):
            raise AudioError("No recording to add: upload or record the voice first.")
        check_consent(consent)
        return voices.add_clip(name, self.pipeline.embed(reference, clean=clean)).name

    def recording_notes(self, name: str, owner: str | None = None, last: bool = False) -> list[str]:
        """What the pipeline noticed in the saved voice's recordings (`last`: in its latest one) as they
        were embedded (a second voice in one: `Pipeline.embed`), a sentence each; empty for clean ones."""
        clips = self.libraries.of(owner).voices.get(name).clip_embeddings
        numbered = list(enumerate(clips, start=1))[-1:] if last else enumerate(clips, start=1)
        notes = [(k, self.pipeline.reference_note(clip)) for k, clip in numbered]
        return [f"Recording {k}: {note}" if len(clips) > 1 else note for k, note in notes if note]

    def voice_clips(self, name: str | None, owner: str | None = None) -> list[list]:
        """Rows (clip, similarity to the voice) of a saved voice: an odd clip stands out with a low score."""
        if not (name or "").strip():
            return []
        voice = self.libraries.of(owner).voices.get(name)
        return [[k, round(self.pipeline.similarity(clip, voice.embedding), 3)]
                for k, clip in enumerate(voice.clip_embeddings, start=1)]

    def delete_voice(self, name: str | None, *, owner: str | None = None) -> str:
        """Delete one of the owner's saved voices (nobody else's: another owner's name is unknown here)."""
        if not (name or "").strip():
            raise VoiceError("Choose a saved voice to delete.")
        return self.libraries.of(owner).voices.delete(name).name

    def voice_names(self, owner: str | None = None) -> list[str]:
        """The owner's saved voices' names, sorted."""
        return self.libraries.of(owner).voices.names()

    def voice_preview(self, name: str, owner: str | None = None) -> Path:
        """A copy of a saved voice's preview among the served outputs (the library itself is never served)."""
        voice = self.libraries.of(owner).voices.get(name)
        return self.outputs.copy(voice.preview, "preview.wav")
