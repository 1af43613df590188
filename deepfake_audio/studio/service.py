"""What the web studio does, without the web: requests in, audio, figures and words out.

`Studio` owns one loaded `Pipeline` and the services built on it, one module a concern:

- `clones.CloneService` (`studio.clones`): clone orchestration, streaming, batches;
- `voices.VoiceService` (`studio.saved_voices`): save, extend, preview and delete voices;
- `maps.VoiceMaps` (`studio.maps`): the voice map of a library;
- `libraries.Libraries` (`studio.libraries`): whose library a request sees, crash repair;
- `voice_training.VoiceTraining` (`studio.training`): takes for training a voice, and the
  queue of jobs that tune one (`tuning_jobs`);
- `notices` and `outputs.Outputs` (`studio.outputs`): the words about weights and runs,
  and the served output files (pruned after an hour).

`Studio` itself is a facade: its verbs are those services' own methods, so callers can
keep calling `studio.clone(...)`. Everything here can be tested without a browser, and
is safe to call from several threads.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from deepfake_audio_core.errors import RequestError
from deepfake_audio_core.modes import check_mode
from deepfake_audio.pipeline import MAX_TEXT_CHARS, Pipeline
from deepfake_audio.studio import notices, owners
from deepfake_audio.studio.clones import MAX_SEED, CloneOutput, CloneService, check_seed
from deepfake_audio.studio.libraries import Libraries, Library
from deepfake_audio.studio.library import HistoryEntry
from deepfake_audio.studio.maps import VoiceMaps
from deepfake_audio.studio.outputs import Outputs
from deepfake_audio.studio.voice_training import VoiceTraining
from deepfake_audio.studio.voices import VoiceService, saved_voice_pitch

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "studio_data"  # the repository's (git ignores it)


def default_data_dir() -> Path:
    """$DEEPFAKE_AUDIO_DATA, else /data/deepfake-audio on a Space with persistent storage, else ./studio_data."""
    if os.environ.get("DEEPFAKE_AUDIO_DATA"):
        return Path(os.environ["DEEPFAKE_AUDIO_DATA"])
    if os.environ.get("SPACE_ID") and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data/deepfake-audio")
    return DEFAULT_DATA_DIR


class _Forward:
    """A facade method that is one service's own: `studio.clone` is `studio.clones.clone`, bound."""

    def __init__(self, service: str, name: str | None = None):
        self.service, self.name = service, name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, studio, owner=None):
        if studio is None:
            return self
        return getattr(getattr(studio, self.service), self.name)


class Studio:
    """One loaded pipeline plus the voice libraries and results logs under `data_dir`."""

    def __init__(self, models_dir: Path | str | None = None, data_dir: Path | str | None = None, *,
                 device: str | None = None, pipeline: Pipeline | None = None, warm_up: bool = False,
                 private: bool | None = None, mode: str = "fast"):
        """`mode` is the pipeline's for every request (`deepfake_audio_core.modes`): "fast"
        (default; int8 arithmetic), "int8", "fp16" or "parity"."""
        self.mode = check_mode(mode)
        self.pipeline = pipeline if pipeline is not None else Pipeline(models_dir, device=device)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        # One library per visitor (see `owners`), or the one library of a single-user install.
        self.private = owners.private_libraries_default() if private is None else bool(private)
        self.libraries = Libraries(self.data_dir, self.private)
        self.outputs = Outputs()
        self.clones = CloneService(self.pipeline, self.libraries, self.outputs, self.mode)
        self.saved_voices = VoiceService(self.pipeline, self.libraries, self.outputs)
        self.maps = VoiceMaps(self.libraries)
        self.training = VoiceTraining(self.pipeline, self.libraries, self.outputs, self.data_dir)
        self.repaired = self.libraries.repair()
        if warm_up:
            threading.Thread(target=self._warm_up, name="studio-warm-up", daemon=True).start()

    # The single-user library (a private studio keeps each owner's apart: see `library`).

    @property
    def voices(self):
        return self.libraries.shared.voices

    @property
    def results(self):
        return self.libraries.shared.results

    @property
    def history(self):
        return self.libraries.shared.history

    @property
    def output_dir(self) -> Path:
        """The only studio folder the page may serve files from."""
        return self.outputs.folder

    # What the models can do, in words for the page.

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

    @property
    def default_vocoder(self) -> str:
        return self.pipeline.default_vocoder()

    def public_weights(self) -> dict[str, str]:
        """Which weights each stage uses, in words and without server paths (for the page)."""
        return notices.public_weights(self.pipeline)

    def weights_notice(self) -> str:
        """One Markdown line per missing checkpoint, with the command that fetches it ('' when complete)."""
        return notices.weights_notice(self.pipeline)

    def vocoder_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs of the vocoders that can run now."""
        return notices.vocoder_choices(self.pipeline)

    def describe_weights(self) -> dict[str, str]:
        return self.pipeline.describe()

    # Libraries, clones, voices and the map: the services' own verbs.

    library = _Forward("libraries", "of")
    repair_libraries = _Forward("libraries", "repair")
    clone = _Forward("clones")
    clone_stream = _Forward("clones")
    batch = _Forward("clones")
    check_seed = staticmethod(check_seed)
    save_voice = _Forward("saved_voices")
    add_clip = _Forward("saved_voices")
    voice_clips = _Forward("saved_voices")
    recording_notes = _Forward("saved_voices")
    delete_voice = _Forward("saved_voices")
    voice_names = _Forward("saved_voices")
    voice_preview = _Forward("saved_voices")
    voice_map = _Forward("maps")
    copy_for_page = _Forward("outputs", "copy")
    add_take = _Forward("training")
    start_training = _Forward("training", "start")
    training_status = _Forward("training", "status")
    cancel_training = _Forward("training", "cancel")

    def recent(self, owner: str | None = None) -> list[HistoryEntry]:
        """The owner's recent results, newest first."""
        return self.library(owner).history.list()

    def _warm_up(self) -> None:
        """Load the audio stack and the number speller, compile UMAP, load matplotlib's fonts and build
        the native vocoder loop before the first user needs them."""
        try:
            rng = np.random.default_rng(0)
            self.pipeline.embed_output(0.1 * rng.standard_normal(22050), 22050)  # imports librosa
            if self.pipeline.synthesizer is not None:  # imports inflect, which spells out numbers
                self.pipeline.synthesizer.text_ids("At 10 past 2.")
            self.maps.warm_up()
        except Exception:  # a cold first map is slower, nothing worse
            logger.warning("Warm-up of the voice map failed", exc_info=True)
        note = self.pipeline.prepare_fast_vocoder()  # builds the C loop now (a few seconds) if setup did not
        if note:
            logger.info("Fast vocoder: TorchScript loop (%s)", note)


__all__ = ["Studio", "CloneOutput", "Library", "RequestError", "default_data_dir", "saved_voice_pitch",
           "MAX_TEXT_CHARS", "MAX_SEED"]
