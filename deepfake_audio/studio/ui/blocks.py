"""The studio's Blocks, assembled: the page's parts, the tabs in order, then their events.

Every tab lays itself out when it is made and wires its own events afterwards; the
events are wired in a fixed order once every component exists (the Batch tab uses the
Clone tab's speaking rate and pitch).
"""
from __future__ import annotations

import os

import gradio as gr

from deepfake_audio.studio import owners
from deepfake_audio.studio.limits import UPLOAD_WINDOW_SECONDS
from deepfake_audio.studio.service import Studio
from deepfake_audio.studio.ui.batch_tab import BatchTab
from deepfake_audio.studio.ui.check_tab import CheckTab
from deepfake_audio.studio.ui.clone_tab import CloneTab
from deepfake_audio.studio.ui.handlers import Handlers
from deepfake_audio.studio.ui.history_tab import HistoryTab
from deepfake_audio.studio.ui.models_tab import models_tab
from deepfake_audio.studio.ui.page import INTRO, TITLE
from deepfake_audio.studio.ui.train_tab import TrainTab
from deepfake_audio.studio.ui.voices_tab import VoicesTab

# Uploads and results in Gradio's cache: every 15 minutes, files older than the upload window (an hour) go.
UPLOAD_CACHE = (900, int(UPLOAD_WINDOW_SECONDS))


def build_ui(studio: Studio, clone_concurrency: int = 1) -> gr.Blocks:
    """The studio's Blocks: Clone, Voices, Train a voice, Batch, History, Check audio and Models tabs, with named
    API endpoints.

    Every event that touches saved voices or results takes the owner token the page keeps
    in the browser (and the signed-in account on a Space with sign-in): see
    `deepfake_audio.studio.owners`. A single-user studio ignores both.
    """
    handlers = Handlers(studio, clone_concurrency)
    with gr.Blocks(title=TITLE, delete_cache=UPLOAD_CACHE) as demo:
        owner_token = gr.BrowserState(None, storage_key="deepfake-audio-owner",
                                      secret=owners.browser_secret(studio.data_dir))  # kept across restarts
        prefs = gr.BrowserState({}, storage_key="deepfake-audio-options")  # see handlers.REMEMBERED
        gr.Markdown(INTRO, elem_id="intro")
        if studio.private and os.environ.get("OAUTH_CLIENT_ID"):  # a Space with sign-in: voices follow the account
            gr.LoginButton()
        notice = studio.weights_notice()
        # Without a synthesizer nothing can be cloned: say so first. The starter's note goes under the result.
        notice_first = bool(notice) and not studio.has_synthesizer
        if notice_first:
            gr.Markdown(notice, elem_id="weights-notice")
        with gr.Tabs():
            clone = CloneTab(handlers, notice="" if notice_first else notice)
            voices = VoicesTab(handlers)
            train = TrainTab(handlers)
            batch = BatchTab(handlers)
            history = HistoryTab(handlers)
            check = CheckTab(handlers)
            models_tab(studio)
        clone.wire(demo, owner_token, prefs)
        voices.wire(owner_token)
        train.wire(owner_token, clone.voice)
        check.wire()
        batch.wire(owner_token, clone.pace, clone.pitch)
        history.wire(owner_token)
        gr.api(handlers.voices, api_name="voices")
    return demo
