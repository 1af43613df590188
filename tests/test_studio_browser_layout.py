"""The Clone tab's layout on a phone and a laptop, in a real headless Chromium, on the shipped
starter models: the voice, the text, consent and Synthesize come first and fit the first
screens; the result is beside the controls on a wide screen and under Synthesize on a
narrow one; options stay in collapsed sections the browser remembers; Ctrl+Enter synthesizes."""
from __future__ import annotations

import os

import pytest

from deepfake_audio.studio.examples import example_voices
from test_studio_browser import (CHROMIUM, CHROMIUM_ARGS, REPO, TIMEOUT_MS, open_sections, running_studio,
                                 wait_for_clone)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup.sh --dev")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}
LAPTOP = {"viewport": {"width": 1366, "height": 768}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # an empty models folder: the starter models speak
    with running_studio(tmp_path_factory.mktemp("layout-models"), tmp_path_factory.mktemp("layout-data")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def load(browser, server, device: dict):
    context = browser.new_context(**device)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#synthesize")
    page.wait_for_timeout(500)  # fonts and the remembered options settle
    return context, page


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def test_synthesize_is_within_the_first_screens(browser, server):
    context, page = load(browser, server, PHONE)
    synthesize = box(page, "#synthesize")
    assert synthesize["y"] <= 1.5 * 844, synthesize  # within a screen and a half on a phone, as the page loads
    order = [box(page, s)["y"] for s in ("#reference-audio", "#text-input", "#consent", "#synthesize")]
    assert order == sorted(order)  # the voice, the text, consent, Synthesize
    result = box(page, "#output-audio")
    assert result["y"] > synthesize["y"] and result["y"] - synthesize["y"] < 500  # the result right below
    context.close()

    context, page = load(browser, server, LAPTOP)
    synthesize = box(page, "#synthesize")
    assert synthesize["y"] + synthesize["height"] <= 768, synthesize  # visible without scrolling
    result = box(page, "#output-audio")
    assert result["x"] > synthesize["x"] + synthesize["width"] and result["y"] < 768  # beside the controls
    assert not page.is_visible("#seed") and not page.is_visible("#voice-name")  # options and saving: collapsed
    context.close()


def test_an_example_voice_clones_on_a_phone_with_ctrl_enter(browser, server):
    chosen = example_voices()[0]
    context, page = load(browser, server, PHONE)
    page.locator("#example-voices").get_by_text(chosen.label, exact=True).click()
    page.wait_for_function("text => document.querySelector('#text-input textarea')?.value === text", arg=chosen.text)
    page.locator("#text-input textarea").press("Control+Enter")
    wait_for_clone(page)
    assert "starter vocoder" in page.inner_text("#run-status")
    assert server.studio.recent()[0].text == chosen.text
    docs_screenshot(page, "studio-phone.png")
    context.close()
    context, page = load(browser, server, LAPTOP)  # the same clone on a laptop, for the README
    page.locator("#example-voices").get_by_text(chosen.label, exact=True).click()
    page.wait_for_function("text => document.querySelector('#text-input textarea')?.value === text", arg=chosen.text)
    page.click("#synthesize")
    wait_for_clone(page)
    docs_screenshot(page, "studio.png")
    context.close()


def docs_screenshot(page, name: str) -> None:
    """With STUDIO_DOCS_SCREENSHOT=1, refresh the README's picture `docs/<name>` (the first screen)."""
    if os.environ.get("STUDIO_DOCS_SCREENSHOT") == "1":
        page.wait_for_timeout(1500)  # the figures are drawn
        page.screenshot(path=str(REPO / "docs" / name))


def test_the_browser_remembers_the_options_and_open_sections(browser, server):
    context, page = load(browser, server, LAPTOP)
    open_sections(page)
    page.fill("#pitch input[type=number]", "-2")
    page.locator("#pitch input[type=number]").press("Enter")
    page.fill("#pace input[type=number]", "1.3")
    page.locator("#pace input[type=number]").press("Enter")
    page.wait_for_timeout(1000)
    page.reload()
    page.wait_for_selector("#seed")  # the options section opened itself again
    page.wait_for_function("() => document.querySelector('#pitch input[type=number]')?.value === '-2'")
    assert page.input_value("#pace input[type=number]") == "1.3"
    assert page.is_visible("#voice-name")
    context.close()
    context, page = load(browser, server, LAPTOP)  # another browser profile starts from the defaults
    assert not page.is_visible("#seed")
    context.close()


def test_the_train_tab_is_reachable_and_fits_a_phone(browser, server):
    """On a phone the Train a voice tab can be opened (tabs that do not fit go into Gradio's overflow
    menu), nothing on it is wider than the screen, and the prompt, the recorder and Keep come in order."""
    context, page = load(browser, server, PHONE)
    tab = page.get_by_role("tab", name="Train a voice")
    if tab.is_visible():
        tab.click()
    else:  # as a phone's visitor does: the "..." menu, then the tab's entry in it
        page.locator(".overflow-menu").first.click()
        page.locator(".overflow-dropdown").get_by_text("Train a voice", exact=True).click()
    page.wait_for_function("() => (document.querySelector('#train-prompt')?.innerText || '').trim().length > 20")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"] + 1
    order = [box(page, s) for s in ("#train-name", "#train-prompt", "#train-take", "#train-keep")]
    assert all(b is not None and b["width"] <= PHONE["viewport"]["width"] for b in order), order
    assert [b["y"] for b in order] == sorted(b["y"] for b in order)
    assert order[-1]["y"] <= 2 * PHONE["viewport"]["height"]  # Keep within two screens of the top
    docs_screenshot(page, "studio-train-phone.png")
    context.close()
