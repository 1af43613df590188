"""The base layer: what the three stages and everything above them stand on.

errors (user-facing exceptions), checkpoint (safe, strict weight loading), audio_io
(decoding and writing audio), audio_config (the mel configuration the synthesizer and
the vocoder share), hparams (frozen-dataclass overrides), modes (the inference modes
and what "fast" means), rng (seeded generators) and threads (the shared worker pool).
Nothing here imports a stage or anything above.
"""
