"""The base layer: what the three stages and everything above them stand on.

errors (user-facing exceptions), checkpoint (safe, strict weight loading), audio_io
(decoding and writing audio), audio_config (the mel configuration the synthesizer and
the vocoder share), hparams (frozen-dataclass overrides), modes (the inference modes
and what "fast" means), pitch (F0 tracking), rng (seeded generators), threads (the
shared worker pool) and console (running a command with user-facing errors).
Nothing here imports a stage or anything above. It is a top-level package beside the
stages, not inside `deepfake_audio`, so importing it never runs `deepfake_audio/__init__.py`
(which imports the pipeline, and so the stages).
"""
