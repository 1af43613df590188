"""A studio behind an API key, in a real headless Chromium: signed out, the page sends the
browser to the sign-in page; signed in once, the whole page (its Gradio API calls, uploads
and result files) works."""
from __future__ import annotations

import pytest

from test_studio_api import models_folder
from test_studio_browser import (CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, files, open_sections,  # noqa: F401
                                 running_studio, upload_reference, wait_for_clone)

KEY = "browser-key-0123456789"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup.sh --dev")


@pytest.fixture(scope="module")
def server(quick_dir, tmp_path_factory):
    with running_studio(models_folder(tmp_path_factory.mktemp("key-models"), quick_dir),
                        tmp_path_factory.mktemp("key-data"), {"DEEPFAKE_AUDIO_API_KEY": KEY}) as server:
        yield server


def test_sign_in_once_then_clone(server, files, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        refused = []
        context.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
        page = context.new_page()
        page.goto(server.url)
        assert "/login" in page.url and page.title().startswith("Sign in")
        page.fill("#key", "not the key")
        page.click("button[type=submit]")
        page.wait_for_selector(":text('That key is not right')")
        refused.clear()  # that 401 was the point
        page.fill("#key", KEY)
        page.click("button[type=submit]")
        page.wait_for_selector("#synthesize")
        open_sections(page)
        upload_reference(page, files["voice"])
        page.locator("#text-input textarea").fill("Signed in once, the page works.")
        page.check("#vocoder input[value='griffinlim']")
        page.fill("#pitch input[type=number]", "-3")
        page.locator("#pitch input[type=number]").press("Enter")
        page.click("#synthesize")
        wait_for_clone(page)
        status = page.inner_text("#run-status")
        assert "real-time factor" in status and "keeps the voice's own pitch" in status  # Tacotron + Griffin-Lim
        assert page.locator("#output-audio audio, #output-audio a[download]").count() > 0
        assert refused == []  # every request of the signed-in page carried the session
        # a new browser (no cookie) is sent to sign in again, and the studio's files are closed to it
        other = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        fresh = other.new_page()
        fresh.goto(server.url)
        assert "/login" in fresh.url
        other.close()
        context.close()
