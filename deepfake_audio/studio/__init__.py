"""The studio's logic, without the web page: `studio.ui` lays out the Gradio components.

service (`Studio`, the facade: requests in, audio, figures and words out) over one
module a concern: clones (clone orchestration), voices (saving and deleting voices),
maps (the voice map), libraries (whose library a request sees), notices (weights and
run status in words) and outputs (served files, pruned). Underneath: library (saved
voices and the results log on disk), plots (spectrogram, embeddings and voice-map
figures) and voice_map (similarity in words, 2-D projections). The studio asks the
pipeline for embeddings and similarity; it never calls a stage itself.
"""
from deepfake_audio_core.errors import RequestError
from deepfake_audio.download import fetch_missing_weights
from deepfake_audio.studio.service import MAX_SEED, MAX_TEXT_CHARS, CloneOutput, Studio, default_data_dir

__all__ = ["Studio", "CloneOutput", "RequestError", "default_data_dir", "fetch_missing_weights", "MAX_TEXT_CHARS",
           "MAX_SEED"]
