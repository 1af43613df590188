"""What the web studio does, without the web: requests in, audio, figures and words out.

`Studio` owns one loaded `Pipeline`, the saved-voice library and the results log.
`app.py` only lays out components and turns `DeepfakeAudioError`s into messages, so
everything here can be tested without a browser. Safe to call from several threads.
"""
from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from deepfake_audio.core.audio_io import OUTPUT_FORMATS, load_audio, normalize_loudness, output_format, write_audio
from deepfake_audio.core.errors import AudioError, RequestError
from deepfake_audio.core.modes import check_mode
from deepfake_audio.core.pitch import pitch_stats
from deepfake_audio.download import download_command
from deepfake_audio.pipeline import (MAX_TEXT_CHARS, SAMPLE_RATE, SENTENCE_PAUSE_SECONDS, VOCODER_LABELS,
                                     ClonePlan, CloneResult, Pipeline, ProgressEvent, check_pace, check_pitch,
                                     normalize_peak)
from deepfake_audio.script import has_markup
from deepfake_audio.studio import owners
from deepfake_audio.studio.library import (MAX_CLIPS, HistoryEntry, HistoryLog, ResultLog, VoiceError, VoiceLibrary,
                                           clean_name, mean_embedding, record_result, repair_library)
from deepfake_audio.studio.plots import MapPoint, embeddings_figure, mel_figure, voice_map_figure
from deepfake_audio.studio.voice_map import describe_similarity, project_2d
from deepfake_audio.watermark import provenance_tags

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "studio_data"
MAX_SEED = 2**31 - 1
MAP_MAX_RESULTS = 40
OUTPUT_MAX_AGE_SECONDS = 3600
# (fraction done in [0, 1], what is happening): fed to the web page's progress bar.
Report = Callable[[float, str], None]


def default_data_dir() -> Path:
    """$DEEPFAKE_AUDIO_DATA, else /data/deepfake-audio on a Space with persistent storage, else ./studio_data."""
    if os.environ.get("DEEPFAKE_AUDIO_DATA"):
        return Path(os.environ["DEEPFAKE_AUDIO_DATA"])
    if os.environ.get("SPACE_ID") and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data/deepfake-audio")
    return DEFAULT_DATA_DIR


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


class Studio:
    """One loaded pipeline plus the voice library and results log under `data_dir`."""

    def __init__(self, models_dir: Path | str | None = None, data_dir: Path | str | None = None, *,
                 device: str | None = None, pipeline: Pipeline | None = None, warm_up: bool = False,
                 private: bool | None = None, mode: str = "fast"):
        """`mode` is the pipeline's for every request (`deepfake_audio.core.modes`): "fast"
        (default; int8 arithmetic), "int8", "fp16" or "parity"."""
        self.mode = check_mode(mode)
        self.pipeline = pipeline if pipeline is not None else Pipeline(models_dir, device=device)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        # One library per visitor (see `owners`), or the one library of a single-user install.
        self.private = owners.private_libraries_default() if private is None else bool(private)
        self.voices = VoiceLibrary(self.data_dir / "voices")  # the single-user library
        self.results = ResultLog(self.data_dir / "results.json")
        self.history = HistoryLog(self.data_dir / "history")
        self._libraries: dict[str, Library] = {}
        self._libraries_lock = threading.Lock()
        self.output_dir = Path(tempfile.mkdtemp(prefix="deepfake-audio-outputs-"))
        self._map_lock = threading.Lock()
        self.repaired = self.repair_libraries()
        if warm_up:
            threading.Thread(target=self._warm_up, name="studio-warm-up", daemon=True).start()

    @property
    def has_synthesizer(self) -> bool:
        return self.pipeline.synthesizer is not None

    @property
    def has_vocoder(self) -> bool:
        return self.pipeline.vocoder is not None

    @property
    def can_stream(self) -> bool:
        """Whether the page can play audio as it is made (Gradio encodes the stream with ffmpeg)."""
        return shutil.which("ffmpeg") is not None

    def public_weights(self) -> dict[str, str]:
        """Which weights each stage uses, in words and without server paths (for the page)."""
        pipe = self.pipeline
        described = {"encoder": f"official speaker encoder (step {pipe.encoder.step})"}
        for stage, model, path in (("synthesizer", pipe.synthesizer, pipe.synthesizer_path),
                                   ("vocoder", pipe.vocoder, pipe.vocoder_path)):
            if model is None:
                stand_in = "the starter vocoder" if pipe.starter_vocoder is not None else "Griffin-Lim"
                described[stage] = f"`{path.name}` missing" + (f": {stand_in} stands in" if stage == "vocoder" else "")
            elif pipe.is_starter(stage):
                described[stage] = f"small starter model (step {model.step}), trained on synthetic voices"
            else:
                described[stage] = f"`{path.name}` (step {model.step})"
        return described

    def weights_notice(self) -> str:
        """One Markdown line per missing checkpoint, with the command that fetches it ('' when complete).

        No server path is shown: a folder other than the default is named "<models folder>".
        """
        command = download_command(self.pipeline.models_dir)
        if "--models" in command:
            command = command[:command.index("--models")] + "--models <models folder>"
        lines = []
        starter = self.pipeline.is_starter("synthesizer")
        if starter:
            vocoder = "WaveRNN" if self.has_vocoder else \
                ("the starter vocoder" if self.pipeline.starter_vocoder is not None else "Griffin-Lim")
            lines.append(f"**Starter models in use**: cloning works offline with the small starter synthesizer "
                         f"(trained here on synthetic voices) and {vocoder}. The official models sound far more "
                         f"natural and closer to the reference: fetch them with `{command}` and restart.")
        if not self.has_synthesizer:
            lines.append(f"**No synthesizer weights** ({self.pipeline.synthesizer_path.name} is not in the models "
                         f"folder): cloning is off until you run `{command}`.")
        if not self.has_vocoder and not starter:
            stand_in = "the starter vocoder" if self.pipeline.starter_vocoder is not None else "Griffin-Lim"
            lines.append(f"**No WaveRNN vocoder weights**: {stand_in} stands in (faster, more robotic). "
                         f"Fetch the vocoder with `{command}`.")
        return "\n\n".join(lines)

    def vocoder_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs of the vocoders that can run now."""
        choices = [("WaveRNN (natural, slow on CPU)", "wavernn")] if self.has_vocoder else []
        if self.pipeline.starter_vocoder is not None:
            choices.append(("Starter vocoder (fast, follows the voice's pitch)", "starter"))
        return choices + [("Griffin-Lim (fast, robotic)", "griffinlim")]

    @property
    def default_vocoder(self) -> str:
        return self.pipeline.default_vocoder()

    def describe_weights(self) -> dict[str, str]:
        return self.pipeline.describe()

    def repair_libraries(self) -> dict[str, list[str]]:
        """Clean up after a crash (see `library.repair_library`) in the single-user library and
        every owner's; logs and returns what was repaired, by folder."""
        folders = [self.data_dir]
        owners_root = self.data_dir / owners.OWNERS_FOLDER
        if owners_root.is_dir():
            folders += sorted(p for p in owners_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        repaired = {}
        for folder in folders:
            if folder == self.data_dir:
                library = Library(self.voices, self.results, self.history)
            elif not any((folder / part).exists() for part in ("voices", "results.json", "history")):
                continue
            else:
                library = Library(VoiceLibrary(folder / "voices"), ResultLog(folder / "results.json"),
                                  HistoryLog(folder / "history"))
            done = repair_library(library.voices, library.results, library.history)
            if done:
                repaired[str(folder)] = done
                for line in done:
                    logger.warning("library %s: %s", folder, line)
        if not repaired:
            logger.info("libraries in %s are consistent", self.data_dir)
        return repaired

    def library(self, owner: str | None = None) -> "Library":
        """The saved voices and results a request may see: its owner's, or the single-user ones."""
        if not self.private:
            return Library(self.voices, self.results, self.history)
        folder = owners.owner_folder(self.data_dir, owners.require_owner(owner))
        with self._libraries_lock:
            if folder.name not in self._libraries:
                self._libraries[folder.name] = Library(VoiceLibrary(folder / "voices"),
                                                       ResultLog(folder / "results.json"), HistoryLog(folder / "history"))
            return self._libraries[folder.name]

    # Cloning

    def clone(self, reference: str | Path | None, voice: str | None, text: str, seed=None,
              vocoder: str | None = None, report: Report | None = None, *, consent: bool = False,
              owner: str | None = None, pace: float = 1.0, file_format: str = "wav",
              loudness: float | str | None = None, clean: bool = False, pitch: float = 0.0) -> CloneOutput:
        """Speak `text` with a saved `voice` or, when none is chosen, the `reference` recording.

        A recording needs `consent`: the user's confirmation that they have the speaker's
        permission (a saved voice recorded it when it was saved). `owner` picks the library
        (see `library`). `seed` None or "" draws a random one (returned, so the result can be
        repeated). `pitch` moves the voice by that many semitones (-12 to 12). Raises a
        `DeepfakeAudioError` subclass for anything the user can fix.
        """
        reporter = _StageReporter(report)
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
        from deepfake_audio.streaming import stream_clone
        reporter = _StageReporter(report)
        export = Export.of(file_format, loudness)
        start = time.perf_counter()
        request = self._plan(reference, voice, text, seed, vocoder, reporter, consent, owner, pace, clean, pitch)
        stream = stream_clone(self.pipeline, plan=request.plan, progress=reporter)
        pieces: list[np.ndarray] = []
        first_audio = None
        for chunk in stream:
            if first_audio is None:
                first_audio = time.perf_counter() - start
            pieces.append(chunk.audio)
            yield chunk.audio
        wav = normalize_peak(np.concatenate(pieces) if pieces else np.zeros(0, np.float32))
        result = CloneResult(wav, SAMPLE_RATE, request.plan.embedding, stream.mels, list(request.plan.sentences),
                             request.plan.vocoder, {"streaming": time.perf_counter() - start})
        yield self._finish(result, request, text, reporter.report, export, first_audio=first_audio)

    def _plan(self, reference, voice, text: str, seed, vocoder, reporter: "_StageReporter", consent: bool,
              owner: str | None, pace: float = 1.0, clean: bool = False, pitch: float = 0.0) -> "_Request":
        """The pipeline's plan of a studio request (a saved voice, or else a recording); raises
        the error a user can act on."""
        seed = self.check_seed(seed)
        library = self.library(owner)
        voice = (voice or "").strip()
        embedding, pitch_hz = None, None
        if voice:
            saved = library.voices.get(voice)
            embedding, voice = saved.embedding, saved.name
            pitch_hz = saved_voice_pitch(saved.preview)
        elif reference is not None and str(reference).strip():
            check_consent(consent)
        else:
            reference = None  # fine for a script spoken only by saved voices; else the pipeline says so
        saved_voices = {v.name: v.embedding for v in library.voices.list()} if has_markup(text) else None
        start = time.perf_counter()
        plan = self.pipeline.plan(None if voice else reference, text, seed, vocoder, embedding=embedding,
                                  fallback_vocoder=True, progress=reporter, pace=pace, voices=saved_voices,
                                  clean=clean, mode=self.mode, voice_pitch_hz=pitch_hz, pitch=pitch)
        reporter.vocoder = plan.vocoder
        cleaned = reference if clean and not voice and reference is not None else None
        return _Request(plan, voice, seed, time.perf_counter() - start, library, cleaned)

    def _finish(self, result: CloneResult, request: "_Request", text: str, report: Report, export: "Export",
                first_audio: float | None = None) -> CloneOutput:
        """Similarity check, results log, WAV file and figures of a finished clone."""
        report(0.0, "Comparing the result with the reference voice")
        start = time.perf_counter()
        out_embedding = self.pipeline.embed_output(result.wav, result.sample_rate)
        similarity = None if out_embedding is None else self.pipeline.similarity(result.embedding, out_embedding)
        reading = ("No speech in the result to compare." if similarity is None
                   else describe_similarity(similarity))
        if similarity is not None and request.cleaned is not None:  # what the clean-up changed
            raw = self.pipeline.similarity(self.pipeline.embed(request.cleaned), out_embedding)
            reading += f"\n\nWith the clean-up: {similarity:.2f}; without it: {raw:.2f}."
        compare_seconds = time.perf_counter() - start

        report(0.5, "Drawing the spectrogram and embeddings")
        voice = request.voice or "recording"
        wav_path = self._write_output(result, voice, request.seed, export)
        record_result(request.library.history, request.library.results, wav_path, text, request.voice,
                      request.seed, result.duration, result.embedding, out_embedding, similarity)
        status = self._status(result, request.seed, request.plan.vocoder, request.plan.note, compare_seconds,
                              first_audio) + export.describe()
        report(1.0, "Done")
        return CloneOutput(wav_path, result, request.seed, voice, out_embedding, similarity, reading, status,
                           mel_figure(result.mels, pause_seconds=SENTENCE_PAUSE_SECONDS),
                           embeddings_figure(result.embedding, out_embedding))

    @staticmethod
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

    def _write_output(self, result: CloneResult, voice: str, seed: int, export: "Export" | None = None) -> Path:
        """The result as a file for download: in the chosen format, at the chosen loudness, with tags."""
        export = export or Export()
        self._prune_outputs()
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        slug = "".join(c if c.isalnum() else "-" for c in voice.casefold()).strip("-")[:32] or "voice"
        wav = result.wav if export.loudness is None else normalize_loudness(result.wav, result.sample_rate,
                                                                            export.loudness)
        return write_audio(folder / f"{slug}-seed{seed}{export.extension}", wav, result.sample_rate,
                           provenance_tags())

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
        library = self.library(owner)
        voices = {v.name: v.embedding for v in library.voices.list()}
        default = library.voices.get(voice).embedding if (voice or "").strip() else None
        items = read_batch(batch_file)
        report = report or (lambda fraction, desc: None)
        report(0.0, f"Checked {len(items)} items")
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        return run_batch(self.pipeline, items, folder / f"{Path(batch_file).stem[:40] or 'batch'}.zip",
                         embedding=default, voices=voices, pace=check_pace(pace), file_format=export.file_format,
                         loudness=export.loudness, pitch=check_pitch(pitch),
                         progress=lambda done, total: report(done / total, f"Cloned {done} of {total} files"))

    def copy_for_page(self, path: Path) -> Path:
        """A copy of a library file among the served outputs (library folders are never served)."""
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        return Path(shutil.copyfile(path, folder / path.name))

    def recent(self, owner: str | None = None) -> list[HistoryEntry]:
        """The owner's recent results, newest first."""
        return self.library(owner).history.list()

    def _prune_outputs(self) -> None:
        """Drop generated files older than an hour (Gradio has served its own copy by then)."""
        cutoff = time.time() - OUTPUT_MAX_AGE_SECONDS
        for folder in self.output_dir.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    @staticmethod
    def _status(result: CloneResult, seed: int, vocoder: str, note: str, compare_seconds: float,
                first_audio: float | None = None) -> str:
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

    # Voice library

    def save_voice(self, name: str, reference: str | Path | None, *, consent: bool = False,
                   owner: str | None = None, more_clips: Sequence[str | Path] = (), clean: bool = False) -> str:
        """Embed `reference` (and `more_clips` of the same speaker: 1 to 10 recordings in all) and save
        them as `name` in the owner's library, with the time of the user's `consent` (required).
        The voice's embedding is the normalised mean of its clips'. Returns the saved name."""
        name = clean_name(name)
        voices = self.library(owner).voices
        if name.casefold() in (n.casefold() for n in voices.names()):
            raise VoiceError(f"A voice called {name!r} already exists: choose another name, or delete the saved "
                             "one first.")
        recordings = [r for r in [reference, *(more_clips or ())] if r is not None and str(r).strip()]
        if not recordings:
            raise AudioError("No recording to save: upload or record the voice first.")
        if len(recordings) > MAX_CLIPS:
            raise VoiceError(f"A voice is made from at most {MAX_CLIPS} recordings; {len(recordings)} were given.")
        check_consent(consent)
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
        return voices.save(name, mean_embedding(np.stack(clips)), preview, SAMPLE_RATE, consent=time.time(),
                           clips=clips).name

    def add_clip(self, name: str | None, reference: str | Path | None, *, consent: bool = False,
                 owner: str | None = None, clean: bool = False) -> str:
        """Add another recording of the speaker to the saved voice `name`; returns its name."""
        if not (name or "").strip():
            raise VoiceError("Choose the saved voice to add the recording to.")
        voices = self.library(owner).voices
        voices.get(name)  # an unknown voice is the first thing to say
        if reference is None or str(reference).strip() == "":
            raise AudioError("No recording to add: upload or record the voice first.")
        check_consent(consent)
        return voices.add_clip(name, self.pipeline.embed(reference, clean=clean)).name

    def voice_clips(self, name: str | None, owner: str | None = None) -> list[list]:
        """Rows (clip, similarity to the voice) of a saved voice: an odd clip stands out with a low score."""
        if not (name or "").strip():
            return []
        voice = self.library(owner).voices.get(name)
        return [[k, round(self.pipeline.similarity(clip, voice.embedding), 3)]
                for k, clip in enumerate(voice.clip_embeddings, start=1)]

    def delete_voice(self, name: str | None, *, owner: str | None = None) -> str:
        """Delete one of the owner's saved voices (nobody else's: another owner's name is unknown here)."""
        if not (name or "").strip():
            raise VoiceError("Choose a saved voice to delete.")
        return self.library(owner).voices.delete(name).name

    def voice_names(self, owner: str | None = None) -> list[str]:
        return self.library(owner).voices.names()

    def voice_preview(self, name: str, owner: str | None = None) -> Path:
        """A copy of a saved voice's preview among the served outputs (the library itself is never served)."""
        voice = self.library(owner).voices.get(name)
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        return Path(shutil.copyfile(voice.preview, folder / "preview.wav"))

    # Voice map

    def voice_map(self, owner: str | None = None) -> tuple[object, list[list]]:
        """The map figure of the owner's saved voices and recent results, and its rows (name, kind, similarity)."""
        library = self.library(owner)
        voices = library.voices.list()
        results = library.results.list()[-MAP_MAX_RESULTS:]
        points: list[MapPoint] = []
        embeddings: list[np.ndarray] = []
        index_of: dict[str, int] = {}
        for voice in voices:
            index_of[voice.name.casefold()] = len(points)
            points.append(MapPoint(voice.name, "voice", voice.name.casefold()))
            embeddings.append(voice.embedding)
        rows = [[voice.name, "saved voice", None] for voice in voices]
        n_references = 0
        for entry in results:
            key = entry.source.casefold() if entry.source else ""
            if key not in index_of or not key:
                # The result came from a recording that was never saved (or has been deleted since).
                key = f"ref:{entry.reference.tobytes().hex()[:32]}"
                if key not in index_of:
                    n_references += 1
                    label = f"{entry.source} (deleted)" if entry.source else f"recording {n_references}"
                    index_of[key] = len(points)
                    points.append(MapPoint(label, "reference", key))
                    embeddings.append(entry.reference)
                    rows.append([label, "unsaved reference", None])
            points.append(MapPoint(entry.label, "result", points[index_of[key]].group, link=index_of[key]))
            embeddings.append(entry.output)
            rows.append([entry.label, "generated result", round(entry.similarity, 3)])
        with self._map_lock:  # UMAP's numba code is compiled once; let one thread do it
            projection = project_2d(np.array(embeddings) if embeddings else np.zeros((0, 256)))
        return voice_map_figure(points, projection.coords, projection.method), rows

    def _warm_up(self) -> None:
        """Load the audio stack, compile UMAP, load matplotlib's fonts and build the native vocoder
        loop before the first user needs them."""
        try:
            rng = np.random.default_rng(0)
            self.pipeline.embed_output(0.1 * rng.standard_normal(22050), 22050)  # imports librosa
            points = np.abs(rng.standard_normal((6, 256)))
            with self._map_lock:
                project_2d(points / np.linalg.norm(points, axis=1, keepdims=True))
            voice_map_figure([], np.zeros((0, 2)), "pca")
        except Exception:  # a cold first map is slower, nothing worse
            logger.warning("Warm-up of the voice map failed", exc_info=True)
        note = self.pipeline.prepare_fast_vocoder()  # builds the C loop now (a few seconds) if setup did not
        if note:
            logger.info("Fast vocoder: TorchScript loop (%s)", note)


@dataclass(frozen=True)
class Export:
    """How a result is saved for download: file format and, optionally, a loudness target."""

    file_format: str = "wav"
    loudness: float | None = None  # LUFS; None keeps the 0.97 peak

    @classmethod
    def of(cls, file_format: str | None, loudness) -> "Export":
        """Checked user choices; `RequestError` for an unknown format or an unreasonable target."""
        fmt = (file_format or "wav").strip().lower().lstrip(".")
        if fmt not in OUTPUT_FORMATS:
            raise RequestError(f"Unknown file format {file_format!r}: choose {', '.join(OUTPUT_FORMATS)}.")
        if loudness is None or (isinstance(loudness, str) and not loudness.strip()):
            return cls(fmt)
        try:
            target = float(loudness)
        except (TypeError, ValueError):
            raise RequestError(f"The loudness target must be a number of LUFS, such as -16, got {loudness!r}.") from None
        if not MIN_LUFS <= target <= MAX_LUFS:
            raise RequestError(f"The loudness target must be from {MIN_LUFS} to {MAX_LUFS} LUFS, got {loudness!r}.")
        return cls(fmt, target)

    @property
    def extension(self) -> str:
        return output_format(self.file_format)[3]

    def describe(self) -> str:
        level = "" if self.loudness is None else f" at {self.loudness:g} LUFS"
        return f"\n\nFile: {self.file_format.upper()}{level}, watermarked, with provenance tags."


MIN_LUFS, MAX_LUFS = -40.0, -9.0


@dataclass(frozen=True)
class Library:
    """One owner's saved voices, results log (voice map) and history (recent files)."""

    voices: VoiceLibrary
    results: ResultLog
    history: HistoryLog


def check_consent(consent) -> None:
    """A recording may be cloned or saved only once the user confirms the speaker's permission."""
    if consent is not True and str(consent).strip().lower() not in ("true", "1", "yes"):
        raise RequestError("Confirm that you have the speaker's permission to clone this voice: tick the consent "
                           "box (from the API: consent=true).")


@dataclass
class _Request:
    """A studio clone request: the pipeline's plan plus what the studio shows about it."""

    plan: ClonePlan
    voice: str  # saved voice name, or "" for a recording
    seed: int
    seconds: float  # time taken to plan it (encoding the recording, if any)
    library: Library
    cleaned: str | Path | None = None  # the recording, when it was cleaned up before encoding


class _StageReporter:
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


__all__ = ["Studio", "CloneOutput", "RequestError", "default_data_dir", "MAX_TEXT_CHARS", "MAX_SEED"]


def saved_voice_pitch(preview: Path) -> float | None:
    """Median F0 (Hz) of a saved voice's preview recording, None when it cannot be measured."""
    try:
        stats = pitch_stats(load_audio(preview, SAMPLE_RATE), SAMPLE_RATE)
    except (OSError, AudioError):
        return None
    return None if stats is None else stats.median_hz
