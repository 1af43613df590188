"""Clone orchestration: a studio request planned, run (whole or streamed), compared, saved and drawn.

`CloneService` turns a request (a saved voice or a recording, text, seed, options) into
the pipeline's plan, runs it, checks the result's similarity to the voice, records it
in the owner's history and voice map, writes the file to download and draws the
figures. The HTTP API plans, runs and streams through it too. Raises a
`DeepfakeAudioError` subclass for anything the user can fix.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

import numpy as np

from deepfake_audio_core.errors import DeepfakeAudioError, RequestError
from deepfake_audio_core.tuned import TunedVoice, load_tuned_voice
from deepfake_audio.assembly import normalize_peak
from deepfake_audio.pipeline import (SENTENCE_PAUSE_SECONDS, ClonePlan, CloneResult, Pipeline, ProgressFn, Voice,
                                     no_progress)
from deepfake_audio_core.requests import check_pace, check_pitch
from deepfake_audio.script import has_markup
from deepfake_audio.studio.libraries import Libraries, Library
from deepfake_audio.studio.library import SavedVoice, VoiceError, record_result
from deepfake_audio.studio.notices import Report, StageReporter, clone_status
from deepfake_audio.studio.outputs import Export, Outputs
from deepfake_audio.studio.plots import embeddings_figure, mel_figure
from deepfake_audio.studio.voice_map import describe_similarity
from deepfake_audio.studio.voices import check_consent, saved_voice_pitch

if TYPE_CHECKING:
    from deepfake_audio.streaming import CloneStream

MAX_SEED = 2**31 - 1
# A clone from one clip that scores under "close" gets a pointer to the strongest lever measured
# (bench/RESULTS.md, "Tuned voices" and "Ten seconds of takes"): held-out voices went from 0.68-0.72 to
# 0.82-0.85 at their recordings' level, with 10 s or 5 minutes recorded.
TUNING_HINT_BELOW = 0.75
TUNING_HINT = ("For a closer likeness, tune a voice on this person in the **Train a voice** tab: even three "
               "short sentences of them (about 10 seconds) and 3 minutes of training help, and a few minutes of "
               "recordings also make the words clearer. In our tests that lifted voices whose clones from one "
               "clip scored about 0.70 to 0.82-0.85.")
TUNED_VOICES_KEPT = 16  # tuned voices kept loaded by a studio (7 to 9 MB each)
logger = logging.getLogger(__name__)


@dataclass
class CloneOutput:
    """Everything the studio shows after a clone."""

    wav_path: Path  # 16-bit PCM WAV at `result.sample_rate`
    result: CloneResult
    seed: int
    voice: str  # saved voice name, or "recording"
    output_embedding: np.ndarray | None  # None when the result is silent
    similarity: float | None
    reading: str  # the similarity in plain words
    status: str  # Markdown: duration, real-time factor, stage times
    mel_plot: object  # matplotlib Figure
    embeddings_plot: object


@dataclass
class CloneRequest:
    """A studio clone request: the pipeline's plan plus what the studio shows about it."""

    plan: ClonePlan
    voice: str  # saved voice name, or "" for a recording
    seed: int
    seconds: float  # time taken to plan it (encoding the recording, if any)
    library: Library
    cleaned: str | Path | None = None  # the recording, when it was cleaned up before encoding


def check_seed(seed) -> int:
    """`seed` as an int in [0, 2^31 - 1]; None or '' gives a random one."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        return secrets.randbelow(MAX_SEED + 1)
    try:
        value = float(seed)
    except (TypeError, ValueError):
        raise RequestError(f"The seed must be a whole number, got {seed!r}.") from None
    if not math.isfinite(value) or value != int(value) or not 0 <= value <= MAX_SEED:
        raise RequestError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}.")
    return int(value)


class CloneService:
    """Clones for the page, the Gradio API, batches and the HTTP API, on one loaded pipeline."""

    def __init__(self, pipeline: Pipeline, libraries: Libraries, outputs: Outputs, mode: str = "fast"):
        self.pipeline = pipeline
        self.libraries = libraries
        self.outputs = outputs
        self.mode = mode  # the pipeline's mode for every studio request (`deepfake_audio_core.modes`)
        # loaded tuned voices by (file, mtime), most recent last (a few MB each)
        self._tuned: OrderedDict[tuple[str, int], TunedVoice] = OrderedDict()
        self._tuned_lock = threading.Lock()

    def voice_of(self, saved: SavedVoice) -> Voice:
        """What speaks a saved voice: its tuned voice where it was trained (loaded once per file), else
        its embedding. Raises `VoiceError` or `WeightsError` when its tuned model is gone or damaged."""
        if saved.tuned is None:
            return saved.embedding
        try:
            key = (str(saved.tuned), saved.tuned.stat().st_mtime_ns)
        except OSError:
            raise VoiceError(f"The tuned model of {saved.name!r} is gone (the voice was deleted or is being "
                             "trained again): pick the voice again.") from None
        with self._tuned_lock:
            if key in self._tuned:
                self._tuned.move_to_end(key)
                return self._tuned[key]
        voice = load_tuned_voice(saved.tuned)
        voice.name = saved.name
        with self._tuned_lock:
            for old in [k for k in self._tuned if k[0] == key[0]]:  # an older file of the same voice
                del self._tuned[old]
            self._tuned[key] = voice
            while len(self._tuned) > TUNED_VOICES_KEPT:
                self._tuned.popitem(last=False)
        return voice

    def saved_voices(self, library: Library) -> dict[str, Voice]:
        """{name: what speaks it} of every voice in `library`, for scripts' [voice: Name] lines. A voice
        whose tuned model cannot be read is left out (a script naming it is then told it is unknown)."""
        voices = {}
        for saved in library.voices.list():
            try:
                voices[saved.name] = self.voice_of(saved)
            except DeepfakeAudioError as exc:
                logger.warning("saved voice %r left out of scripts: %s", saved.name, exc)
        return voices

    def _saved_plan_args(self, saved: SavedVoice) -> dict:
        """The plan's voice arguments of a saved voice: a tuned voice, or an embedding at its preview's pitch."""
        voice = self.voice_of(saved)
        self._remember_level(voice.embedding if isinstance(voice, TunedVoice) else voice, saved.preview)
        if isinstance(voice, TunedVoice):
            return {"tuned": voice}
        return {"embedding": voice, "voice_pitch_hz": saved_voice_pitch(saved.preview)}

    def _remember_level(self, embedding: np.ndarray, preview: Path) -> None:
        """Tell the pipeline the speech level of a saved voice's recording, so its results are
        compared with the voice at that level (the encoder hears level); skipped if unreadable, and
        measured once per voice (the pipeline keeps it by embedding)."""
        if self.pipeline.heard_level(embedding) is not None:
            return
        try:
            self.pipeline.remember_level(embedding, self.pipeline.reference_level(preview))
        except (OSError, DeepfakeAudioError) as exc:
            logger.info("no speech level for a saved voice's recording %s: %s", preview.name, exc)

    def clone(self, reference: str | Path | None, voice: str | None, text: str, seed=None,
              vocoder: str | None = None, report: Report | None = None, *, consent: bool = False,
              owner: str | None = None, pace: float = 1.0, file_format: str = "wav",
              loudness: float | str | None = None, clean: bool = False, pitch: float = 0.0) -> CloneOutput:
        """Speak `text` with a saved `voice` or, when none is chosen, the `reference` recording.

        A recording needs `consent`: the user's confirmation that they have the speaker's
        permission (a saved voice recorded it when it was saved). `owner` picks the library
        (see `Libraries.of`). `seed` None or "" draws a random one (returned, so the result
        can be repeated). `pitch` moves the voice by that many semitones (-12 to 12). Raises a
        `DeepfakeAudioError` subclass for anything the user can fix.
        """
        reporter = StageReporter(report)
        export = Export.of(file_format, loudness)
        request = self._plan(reference, voice, text, seed, vocoder, reporter, consent, owner, pace, clean, pitch)
        result = self.pipeline.run(request.plan, reporter, encoding_seconds=request.seconds)
        return self._finish(result, request, text, reporter.report, export)

    def clone_stream(self, reference: str | Path | None, voice: str | None, text: str, seed=None,
                     vocoder: str | None = None, report: Report | None = None, *, consent: bool = False,
                     owner: str | None = None, pace: float = 1.0, file_format: str = "wav",
                     loudness: float | str | None = None, clean: bool = False,
                     pitch: float = 0.0) -> Iterator[np.ndarray | CloneOutput]:
        """`clone` as it happens: float32 audio pieces (16 kHz) as they are final, then the `CloneOutput`.

        Input errors are raised before the first piece. The output's WAV is the pieces
        joined, scaled to the 0.97 peak of `clone`'s output (a stream cannot know its
        loudest sample in advance, so quiet speech plays quieter live).
        """
        reporter = StageReporter(report)
        export = Export.of(file_format, loudness)
        start = time.perf_counter()
        request = self._plan(reference, voice, text, seed, vocoder, reporter, consent, owner, pace, clean, pitch)
        stream = self.stream(request.plan, reporter)
        first_audio = None
        for chunk in stream:
            if first_audio is None:
                first_audio = time.perf_counter() - start
            yield chunk.audio
        played = stream.result()
        result = replace(played, wav=normalize_peak(played.wav), seconds={"streaming": time.perf_counter() - start})
        yield self._finish(result, request, text, reporter.report, export, first_audio=first_audio)

    def batch(self, batch_file: str | Path | None, voice: str | None, *, file_format: str = "wav", loudness=None,
              pace: float = 1.0, owner: str | None = None, report: Report | None = None, pitch: float = 0.0) -> Path:
        """Clone a .txt (a file per paragraph) or .csv (voice,text[,file]) into a ZIP with a manifest.

        Rows without a voice use the saved `voice`; every row is checked before the first
        clone. `pace` and `pitch` (semitones) apply to every row. Returns the ZIP, among the
        served outputs.
        """
        from deepfake_audio.batch import read_batch, run_batch
        if batch_file is None or not str(batch_file).strip():
            raise RequestError("Upload a .txt or .csv file to clone in a batch.")
        export = Export.of(file_format, loudness)
        library = self.libraries.of(owner)
        voices = self.saved_voices(library)
        default = self.voice_of(library.voices.get(voice)) if (voice or "").strip() else None
        items = read_batch(batch_file)
        report = report or (lambda fraction, desc: None)
        report(0.0, f"Checked {len(items)} items")
        zip_path = self.outputs.new_folder() / f"{Path(batch_file).stem[:40] or 'batch'}.zip"
        return run_batch(self.pipeline, items, zip_path, embedding=default, voices=voices, pace=check_pace(pace),
                         file_format=export.file_format, loudness=export.loudness, pitch=check_pitch(pitch),
                         progress=lambda done, total: report(done / total, f"Cloned {done} of {total} files"))

    # The HTTP API's clones: a saved voice, planned once, then run whole or streamed.

    def plan_saved_voice(self, saved: SavedVoice, text: str, *, pace: float = 1.0,
                         voices: Mapping[str, Voice] | None = None, pitch: float = 0.0) -> ClonePlan:
        """The plan of `text` spoken by a saved voice (cheap: no recording to encode), random seed."""
        return self.pipeline.plan(None, text, None, "auto", pace=pace, voices=voices, pitch=pitch, mode=self.mode,
                                  **self._saved_plan_args(saved))

    def run(self, plan: ClonePlan) -> CloneResult:
        """The whole clone of a plan."""
        return self.pipeline.run(plan)

    def stream(self, plan: ClonePlan, progress: ProgressFn = no_progress, keep_audio: bool = True) -> "CloneStream":
        """The plan's clone as a stream of `AudioChunk`s (see `deepfake_audio.streaming.stream_clone`;
        `keep_audio` False for a caller that only relays the pieces)."""
        from deepfake_audio.streaming import stream_clone
        return stream_clone(self.pipeline, plan=plan, progress=progress, keep_audio=keep_audio)

    def _plan(self, reference, voice, text: str, seed, vocoder, reporter: StageReporter, consent: bool,
              owner: str | None, pace: float = 1.0, clean: bool = False, pitch: float = 0.0) -> CloneRequest:
        """The pipeline's plan of a studio request (a saved voice, or else a recording); raises
        the error a user can act on."""
        seed = check_seed(seed)
        library = self.libraries.of(owner)
        voice = (voice or "").strip()
        saved_args: dict = {}
        if voice:
            saved = library.voices.get(voice)
            saved_args, voice = self._saved_plan_args(saved), saved.name
        elif reference is not None and str(reference).strip():
            check_consent(consent)
        else:
            reference = None  # fine for a script spoken only by saved voices; else the pipeline says so
        saved_voices = self.saved_voices(library) if has_markup(text) else None
        start = time.perf_counter()
        plan = self.pipeline.plan(None if voice else reference, text, seed, vocoder, fallback_vocoder=True,
                                  progress=reporter, pace=pace, voices=saved_voices, clean=clean, mode=self.mode,
                                  pitch=pitch, **saved_args)
        reporter.vocoder = plan.vocoder
        cleaned = reference if clean and not voice and reference is not None else None
        return CloneRequest(plan, voice, seed, time.perf_counter() - start, library, cleaned)

    def _finish(self, result: CloneResult, request: CloneRequest, text: str, report: Report, export: Export,
                first_audio: float | None = None) -> CloneOutput:
        """Similarity check, results log, WAV file and figures of a finished clone."""
        report(0.0, "Comparing the result with the reference voice")
        start = time.perf_counter()
        out_embedding = self.pipeline.embed_output(result.wav, result.sample_rate, like=result.embedding)
        similarity = None if out_embedding is None else self.pipeline.similarity(result.embedding, out_embedding)
        reading = ("No speech in the result to compare." if similarity is None
                   else describe_similarity(similarity))
        if similarity is not None and request.cleaned is not None:  # what the clean-up changed
            raw = self.pipeline.similarity(self.pipeline.embed(request.cleaned), out_embedding)
            reading += f"\n\nWith the clean-up: {similarity:.2f}; without it: {raw:.2f}."
        if similarity is not None and similarity < TUNING_HINT_BELOW and request.plan.tuned is None:
            reading += "\n\n" + TUNING_HINT
        compare_seconds = time.perf_counter() - start

        report(0.5, "Drawing the spectrogram and embeddings")
        voice = request.voice or "recording"
        wav_path = self.outputs.write_result(result, voice, request.seed, export)
        record_result(request.library.history, request.library.results, wav_path, text, request.voice,
                      request.seed, result.duration, result.embedding, out_embedding, similarity)
        status = clone_status(result, request.seed, request.plan.vocoder, request.plan.note, compare_seconds,
                              first_audio) + export.describe()
        report(1.0, "Done")
        return CloneOutput(wav_path, result, request.seed, voice, out_embedding, similarity, reading, status,
                           mel_figure(result.mels, pause_seconds=SENTENCE_PAUSE_SECONDS),
                           embeddings_figure(result.embedding, out_embedding))
