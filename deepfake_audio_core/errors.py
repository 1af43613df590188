"""Errors a user can act on.

Every failure caused by input (audio, text, weights) raises a subclass of
`DeepfakeAudioError` whose message says what is wrong and what to do. The CLI and
the studio print that message instead of a traceback.
"""


class DeepfakeAudioError(Exception):
    """Base class of every user-facing error of this project."""


class AudioError(DeepfakeAudioError):
    """The reference audio cannot be used: missing, corrupt, unsupported, silent or too short."""


class TextError(DeepfakeAudioError):
    """The text cannot be spoken: empty, over-long or without speakable characters."""


class WeightsError(DeepfakeAudioError):
    """A checkpoint is missing, corrupt, unsafe or does not match the model."""


class MissingWeightsError(WeightsError):
    """A checkpoint file the requested stage needs is not on disk."""


class RequestError(DeepfakeAudioError):
    """A request option is wrong: vocoder, mode, seed, voice choice or embedding."""
