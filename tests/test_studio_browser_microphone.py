"""The microphone path in a real headless Chromium: Chromium's fake capture device plays a
speech-like file into the studio's recorder; the recording is stopped, clean-up turns itself
on (as the README says), and the recording clones."""
from __future__ import annotations

import time

import pytest

from test_studio_api import models_folder, speechlike_wav
from test_studio_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, open_sections, running_studio, wait_for_clone

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup.sh --dev")


@pytest.fixture(scope="module")
def server(quick_dir, tmp_path_factory):
    with running_studio(models_folder(tmp_path_factory.mktemp("mic-models"), quick_dir),
                        tmp_path_factory.mktemp("mic-data")) as server:
        yield server


def test_record_with_the_microphone_then_clone(server, tmp_path):
    from playwright.sync_api import sync_playwright
    voice = speechlike_wav(tmp_path / "microphone.wav", seconds=8.0, sample_rate=48000, f0=120.0)
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={voice}"]
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        page.wait_for_selector("#synthesize")
        open_sections(page)
        assert not page.is_checked("#clean-up input")
        page.click("#reference-audio button[aria-label='Record audio']")
        page.locator("#reference-audio button:has-text('Record')").first.click()
        time.sleep(4.5)  # the fake device plays the file in a loop
        page.locator("#reference-audio button:has-text('Stop')").first.click()
        page.wait_for_selector("#reference-audio button[aria-label='Trim audio to selection']")
        page.wait_for_function("() => document.querySelector('#clean-up input').checked")  # on after a recording
        page.check("#consent input")
        page.locator("#text-input textarea").fill("Recorded with the microphone.")
        page.check("#vocoder input[value='griffinlim']")
        page.click("#synthesize")
        wait_for_clone(page)
        assert "real-time factor" in page.inner_text("#run-status")
        assert "With the clean-up" in page.inner_text("#similarity-reading")  # the recording was cleaned, and said so
        recorded = server.studio.results.list()[-1]
        assert recorded.source == "" and 0.0 < recorded.similarity <= 1.0  # a recording, not a saved voice
        browser.close()
