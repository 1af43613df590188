"""A fresh install in Chromium: no official weights, an example voice, Synthesize.

The studio runs on the shipped starter models alone (synthesizer and vocoder). The page
must say which vocoder spoke, and pocketsphinx must recognise the sentence in the audio
the page returns.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from test_studio_api import start_studio
from test_studio_browser import CHROMIUM, context, open_studio, page, playwright  # noqa: F401

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup.sh --dev")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The studio as a fresh install starts it: an empty models folder."""
    studio, server = start_studio(tmp_path_factory.mktemp("fresh-models"), tmp_path_factory.mktemp("fresh-data"))
    assert studio.pipeline.is_starter("synthesizer") and studio.default_vocoder == "starter"
    with server:
        server.studio = studio
        yield server


def test_a_fresh_install_speaks_an_example_voice_intelligibly(page, server, tmp_path):
    from deepfake_audio.studio.examples import example_voices
    from deepfake_audio.training.evaluate import Recogniser, word_error_rate
    chosen = example_voices()[0]
    open_studio(page, server)
    assert page.is_checked("#vocoder input[value='starter']")  # the default where no vocoder.pt is
    page.locator("#example-voices").get_by_text(chosen.label, exact=True).click()
    page.wait_for_function("text => document.querySelector('#text-input textarea')?.value === text", arg=chosen.text)
    page.click("#synthesize")
    page.wait_for_function("() => document.querySelector('#run-status')?.innerText.includes('real-time factor')")
    assert "starter vocoder" in page.inner_text("#run-status")
    with page.expect_download() as download:
        page.click("#output-audio a[download]")
    saved = Path(tmp_path) / download.value.suggested_filename
    download.value.save_as(saved)
    wav, rate = sf.read(str(saved), dtype="float32")
    assert rate == 16000
    heard = Recogniser()(wav)
    assert word_error_rate([chosen.text], [heard]) <= 0.35, f"pocketsphinx heard {heard!r} for {chosen.text!r}"
