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
from typing import Callable, Iterator

import numpy as np

from deepfake_audio.audio_io import write_wav
from deepfake_audio.download import download_command
from deepfake_audio.errors import AudioError, DeepfakeAudioError
from deepfake_audio.pipeline import MAX_TEXT_CHARS, OUTPUT_PEAK, SENTENCE_PAUSE_SECONDS, CloneResult, Pipeline
from deepfake_audio.plots import MapPoint, embeddings_figure, mel_figure, voice_map_figure
from deepfake_audio.similarity import cosine_similarity, describe_similarity, output_embedding, project_2d
from deepfake_audio.voices import ResultLog, VoiceError, VoiceLibrary, clean_name
from encoder import hparams as encoder_hp
from encoder.inference import prepare_reference
from vocoder import native

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "studio_data"
MAX_SEED = 2**31 - 1
VOCODER_LABELS = {"wavernn": "WaveRNN", "griffinlim": "Griffin-Lim"}
MAP_MAX_RESULTS = 40
OUTPUT_MAX_AGE_SECONDS = 3600
# (fraction done in [0, 1], what is happening): fed to the web page's progress bar.
Report = Callable[[float, str], None]


class RequestError(DeepfakeAudioError):
    """A request field other than audio or text is wrong (seed, vocoder, voice choice)."""


def default_data_dir() -> Path:
    """$DEEPFAKE_AUDIO_DATA, else /data/deepfake-audio on a Space with persistent storage, else ./studio_data."""
    if os.environ.get("DEEPFAKE_AUDIO_DATA"):
        return Path(os.environ["DEEPFAKE_AUDIO_DATA"])
    if os.environ.get("SPACE_ID") and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data/deepfake-audio")
    return DEFAULT_DATA_DIR


def fetch_missing_weights(models_dir: Path | str | None = None) -> list[str]:
    """Download the official checkpoints the studio would otherwise run without; returns their names.

    For hosts that start from a bare checkout (a Hugging Face Space installs only
    requirements.txt): the synthesizer and vocoder when absent, and encoder.pt when
    neither it nor the encoder bundled with resemblyzer is there. Raises `WeightsError`
    when a download fails.
    """
    from deepfake_audio.download import download_models
    from deepfake_audio.errors import MissingWeightsError
    from deepfake_audio.pipeline import models_folder
    from encoder.inference import default_weights_path

    folder = models_folder(models_dir)
    wanted = [name for name in ("synthesizer.pt", "vocoder.pt") if not (folder / name).is_file()]
    if not (folder / "encoder.pt").is_file():
        try:
            default_weights_path()
        except MissingWeightsError:
            wanted.insert(0, "encoder.pt")
    if wanted:
        download_models(folder, wanted)
    return wanted


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
                 device: str | None = None, pipeline: Pipeline | None = None, warm_up: bool = False):
        self.pipeline = pipeline if pipeline is not None else Pipeline(models_dir, device=device)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.voices = VoiceLibrary(self.data_dir / "voices")
        self.results = ResultLog(self.data_dir / "results.json")
        self.output_dir = Path(tempfile.mkdtemp(prefix="deepfake-audio-outputs-"))
        self._map_lock = threading.Lock()
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

    def weights_notice(self) -> str:
        """One Markdown line per missing checkpoint, with the command that fetches it ('' when complete)."""
        command = download_command(self.pipeline.models_dir)
        lines = []
        if self.pipeline.is_starter("synthesizer"):
            lines.append("**Starter models in use**: a small synthesizer trained on synthetic voices, so clones "
                         "sound robotic and only roughly like the reference. For real cloning fetch the official "
                         f"weights with `{command}` and restart.")
        if not self.has_synthesizer:
            lines.append(f"**No synthesizer weights** ({self.pipeline.synthesizer_path.name} is not in "
                         f"`{self.pipeline.models_dir}`): cloning is off until you run `{command}`.")
        if not self.has_vocoder:
            lines.append(f"**No WaveRNN vocoder weights**: Griffin-Lim stands in (faster, more robotic). "
                         f"Fetch the vocoder with `{command}`.")
        return "\n\n".join(lines)

    def vocoder_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs of the vocoders that can run now."""
        choices = [("WaveRNN (natural, slow on CPU)", "wavernn")] if self.has_vocoder else []
        return choices + [("Griffin-Lim (fast, robotic)", "griffinlim")]

    @property
    def default_vocoder(self) -> str:
        return "wavernn" if self.has_vocoder else "griffinlim"

    def describe_weights(self) -> dict[str, str]:
        return self.pipeline.describe()

    # Cloning

    def clone(self, reference: str | Path | None, voice: str | None, text: str, seed=None,
              vocoder: str | None = None, report: Report | None = None) -> CloneOutput:
        """Speak `text` with a saved `voice` or, when none is chosen, the `reference` recording.

        `seed` None or "" draws a random one (returned, so the result can be repeated).
        Raises a `DeepfakeAudioError` subclass for anything the user can fix.
        """
        report = report or (lambda fraction, desc: None)
        request = self._request(reference, voice, text, seed, vocoder)
        result = self.pipeline.clone(request.reference, text, seed=request.seed, vocoder=request.vocoder,
                                     embedding=request.embedding, progress=_StageReporter(report, request.vocoder))
        return self._finish(result, request, text, report)

    def clone_stream(self, reference: str | Path | None, voice: str | None, text: str, seed=None,
                     vocoder: str | None = None, report: Report | None = None) -> Iterator[np.ndarray | CloneOutput]:
        """`clone` as it happens: float32 audio pieces (16 kHz) as they are final, then the `CloneOutput`.

        Input errors are raised before the first piece. The output's WAV is the pieces
        joined, scaled to the 0.97 peak of `clone`'s output (a stream cannot know its
        loudest sample in advance, so quiet speech plays quieter live).
        """
        report = report or (lambda fraction, desc: None)
        request = self._request(reference, voice, text, seed, vocoder)
        from deepfake_audio.streaming import stream_clone
        start = time.perf_counter()
        stream = stream_clone(self.pipeline, request.reference, text, seed=request.seed, vocoder=request.vocoder,
                              embedding=request.embedding, progress=_StageReporter(report, request.vocoder))
        pieces: list[np.ndarray] = []
        first_audio = None
        for chunk in stream:
            if first_audio is None:
                first_audio = time.perf_counter() - start
            pieces.append(chunk.audio)
            yield chunk.audio
        wav = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        peak = float(np.max(np.abs(wav))) if wav.size else 0.0
        if peak > 0:
            wav = (wav * (OUTPUT_PEAK / peak)).astype(np.float32)
        result = CloneResult(wav, self.pipeline.synthesizer.sample_rate, stream.embedding, stream.mels,
                             stream.sentences, request.vocoder, {"streaming": time.perf_counter() - start})
        yield self._finish(result, request, text, report, first_audio=first_audio)

    def _request(self, reference, voice, text: str, seed, vocoder) -> "_Request":
        """Check a clone request; raises the error a user can act on."""
        Pipeline.prepare_text(text)
        seed = self.check_seed(seed)
        vocoder, note = self._choose_vocoder(vocoder)
        voice = (voice or "").strip()
        embedding = None
        if voice:
            saved = self.voices.get(voice)
            embedding, voice = saved.embedding, saved.name
        elif reference is None or str(reference).strip() == "":
            raise AudioError("No reference voice: upload or record a few seconds of speech, or choose a saved voice.")
        return _Request(None if voice else reference, voice, embedding, seed, vocoder, note)

    def _finish(self, result: CloneResult, request: "_Request", text: str, report: Report,
                first_audio: float | None = None) -> CloneOutput:
        """Similarity check, results log, WAV file and figures of a finished clone."""
        report(0.0, "Comparing the result with the reference voice")
        start = time.perf_counter()
        out_embedding = output_embedding(self.pipeline.encoder, result.wav, result.sample_rate)
        similarity = None if out_embedding is None else cosine_similarity(result.embedding, out_embedding)
        reading = ("No speech in the result to compare." if similarity is None
                   else describe_similarity(similarity))
        compare_seconds = time.perf_counter() - start

        report(0.5, "Drawing the spectrogram and embeddings")
        voice = request.voice or "recording"
        wav_path = self._write_output(result, voice, request.seed)
        if out_embedding is not None:
            self.results.add(text, request.voice, result.embedding, out_embedding, similarity)
        status = self._status(result, request.seed, request.vocoder, request.note, compare_seconds, first_audio)
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

    def _choose_vocoder(self, vocoder: str | None) -> tuple[str, str]:
        """The vocoder to run and a note when it differs from the one asked for."""
        vocoder = (vocoder or self.default_vocoder).strip().lower().replace("-", "").replace(" ", "")
        if vocoder not in VOCODER_LABELS:
            raise RequestError(f"Unknown vocoder {vocoder!r}: choose wavernn or griffinlim.")
        if vocoder == "wavernn" and not self.has_vocoder:
            return "griffinlim", "WaveRNN weights are missing, so Griffin-Lim was used."
        return vocoder, ""

    def _write_output(self, result: CloneResult, voice: str, seed: int) -> Path:
        self._prune_outputs()
        folder = Path(tempfile.mkdtemp(dir=self.output_dir))
        slug = "".join(c if c.isalnum() else "-" for c in voice.casefold()).strip("-")[:32] or "voice"
        return write_wav(folder / f"{slug}-seed{seed}.wav", result.wav, result.sample_rate)

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
                 f"{VOCODER_LABELS[vocoder]} vocoder, {sentences} sentence{'s' if sentences != 1 else ''}."]
        if note:
            lines.append(note)
        return "\n\n".join(lines)

    # Voice library

    def save_voice(self, name: str, reference: str | Path | None) -> str:
        """Embed `reference` and save it as `name`; returns the saved name."""
        name = clean_name(name)
        if name.casefold() in (n.casefold() for n in self.voices.names()):
            raise VoiceError(f"A voice called {name!r} already exists: choose another name, or delete the saved "
                             "one first.")
        if reference is None or str(reference).strip() == "":
            raise AudioError("No recording to save: upload or record the voice first.")
        wav = prepare_reference(reference)
        embedding = self.pipeline.encoder.embed_utterance(wav)
        return self.voices.save(name, embedding, wav, encoder_hp.sampling_rate).name

    def delete_voice(self, name: str | None) -> str:
        if not (name or "").strip():
            raise VoiceError("Choose a saved voice to delete.")
        return self.voices.delete(name).name

    # Voice map

    def voice_map(self) -> tuple[object, list[list]]:
        """The map figure of saved voices and recent results, and its rows (name, kind, similarity)."""
        voices = self.voices.list()
        results = self.results.list()[-MAP_MAX_RESULTS:]
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
            output_embedding(self.pipeline.encoder, 0.1 * rng.standard_normal(22050), 22050)  # imports librosa
            points = np.abs(rng.standard_normal((6, 256)))
            with self._map_lock:
                project_2d(points / np.linalg.norm(points, axis=1, keepdims=True))
            voice_map_figure([], np.zeros((0, 2)), "pca")
        except Exception:  # a cold first map is slower, nothing worse
            logger.warning("Warm-up of the voice map failed", exc_info=True)
        if native.library() is None:  # built now (a few seconds) if setup did not build it
            logger.info("Fast vocoder: TorchScript loop (%s)", native.reason())


@dataclass
class _Request:
    """A checked clone request."""

    reference: str | Path | None  # None when a saved voice is used
    voice: str  # saved voice name, or ""
    embedding: np.ndarray | None
    seed: int
    vocoder: str
    note: str  # why the vocoder differs from the one asked for, or ""


class _StageReporter:
    """Turns the pipeline's (stage, fraction, detail) into words, at most every 1 % per stage."""

    def __init__(self, report: Report, vocoder: str):
        self.report = report
        self.vocoder = VOCODER_LABELS[vocoder]
        self.last: tuple[str, float, str] | None = None

    def __call__(self, stage: str, fraction: float, detail: str) -> None:
        if self.last is not None and self.last[0] == stage and self.last[2] == detail \
                and fraction - self.last[1] < 0.01 and fraction < 1.0:
            return
        self.last = (stage, fraction, detail)
        if stage == "encoding":
            desc = "Encoding the reference voice"
        elif stage == "synthesizing":
            if detail.endswith("sentence(s)"):  # the pipeline's opening message: "<n> sentence(s)"
                n = detail.split()[0]
                detail = f"{n} sentence{'' if n == '1' else 's'}"
            desc = f"Synthesizing {detail}"
        elif stage == "vocoding":
            desc = f"Vocoding with {self.vocoder}: {detail}" if detail.endswith("%") or detail.startswith("sentence") \
                else f"Vocoding with {self.vocoder}"
        else:
            desc = f"{stage.capitalize()}: {detail}"
        self.report(min(max(fraction, 0.0), 1.0), desc)


__all__ = ["Studio", "CloneOutput", "RequestError", "default_data_dir", "MAX_TEXT_CHARS", "MAX_SEED"]
