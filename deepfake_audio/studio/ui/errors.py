"""How a failed request reads on the page and in the API: the user's own error, or a generic one.

A `DeepfakeAudioError` becomes a `gr.Error` with its message (server paths cut out, HTML
escaped) and a title naming what to fix; anything else is logged and shown as a server
error, so no internals reach the page.
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
import re

import gradio as gr

from deepfake_audio_core.errors import AudioError, DeepfakeAudioError, RequestError, TextError, WeightsError
from deepfake_audio.studio.library import VoiceError

logger = logging.getLogger("deepfake_audio.app")

ERROR_TITLES = [(AudioError, "Reference audio"), (TextError, "Text"), (WeightsError, "Model weights"),
                (VoiceError, "Voice library"), (RequestError, "Request")]

# An absolute path inside a message (POSIX, or a Windows drive path), up to a space, quote or colon.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[^\s'\":,]+[/\\])+([^\s'\":,/\\]*)")


def hide_server_paths(message: str) -> str:
    """`message` with every absolute path cut to its last part: the page never shows the server's folders."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "the folder", message)


def as_user_error(exc: Exception, where: str) -> gr.Error:
    """The `gr.Error` shown for `exc`: its message when the user can act on it, else a generic one."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, DeepfakeAudioError):
        title = next((t for cls, t in ERROR_TITLES if isinstance(exc, cls)), "Error")
        return gr.Error(html.escape(hide_server_paths(str(exc)), quote=False), title=title, print_exception=False)
    logger.error("Unexpected error in %s", where, exc_info=exc)
    return gr.Error(f"Something went wrong on the server ({type(exc).__name__}). The details are in the "
                    "server log; your saved voices are safe.", title="Server error", print_exception=False)


def user_errors(fn):
    """Turn the errors a user can act on into a `gr.Error` with their message; hide the rest.

    Works for plain functions and for generators (streamed events), and for methods.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise as_user_error(exc, fn.__name__) from None
        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_user_error(exc, fn.__name__) from None
    return wrapper
