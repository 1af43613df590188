"""Train a voice in a real headless Chromium, through a studio process that is restarted midway.

Chromium's fake microphone plays a sentence spoken by flite; five prompts are recorded and
kept on the Train a voice tab, a short job starts (its steps capped by
DEEPFAKE_AUDIO_TUNE_STEPS), the studio process is stopped while the job runs and started
again on the same data folder, the page sees the job resume and finish, and the tuned
voice, picked on the Clone tab, speaks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio.download import STARTER_MODELS_DIR
from test_studio_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, wait_for_clone
from test_studio_privacy import ROOT, free_port, wait_until_up
from training_corpus import tools_missing

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="needs Debian's chromium at /usr/bin/chromium: run scripts/setup.sh --dev"),
              pytest.mark.skipif(bool(tools_missing()), reason="needs flite and sox: run scripts/setup.sh --dev")]
TAKES = 5
JOB_TIMEOUT_MS = 300_000


@pytest.fixture
def microphone(tmp_path):
    """A prompt read by flite at 48 kHz with silence around it (the fake device loops it), at a 0.5 peak.
    The page asks for the microphone without automatic gain (Chromium's made this file five times louder,
    clipped), so the takes keep about that peak."""
    raw, out = tmp_path / "raw.wav", tmp_path / "microphone.wav"
    text = "The museum's new exhibition shows ninety paintings from three different centuries."
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(raw)], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(out), "norm", "-6", "pad", "0.3", "0.7"],
                   check=True, capture_output=True)
    return out


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(") ")[1][0] not in "ZX"
    except (OSError, IndexError):
        return False


def start_server(data: Path, port: int, log: Path) -> subprocess.Popen:
    """The studio as its own process, on the starter models, with every job capped at 10 steps. Single-user:
    a private studio's page forgets its owner token when the server restarts (its gr.BrowserState secret
    is drawn anew at every start), which is not what this test is about."""
    env = {**os.environ, "DEEPFAKE_AUDIO_TUNE_STEPS": "10"}
    return subprocess.Popen([sys.executable, "app.py", "--models", str(STARTER_MODELS_DIR), "--data", str(data),
                             "--port", str(port), "--host", "127.0.0.1", "--no-private-libraries"], cwd=ROOT, env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


def stop(server: subprocess.Popen) -> None:
    """Stop the studio as its service manager would: SIGTERM, then SIGKILL if it lingers."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)


def record_takes(page, count: int) -> list[str]:
    """Record `count` prompts with the (fake) microphone, each checked, then kept; returns the checks' notes."""
    notes = []
    for k in range(count):
        page.wait_for_selector(f"#train-prompt :text('Sentence {k + 1} of')")
        page.locator("#train-take button:has-text('Record')").first.click()
        time.sleep(3.5)
        page.locator("#train-take button:has-text('Stop')").first.click()
        page.wait_for_selector("#train-note :text-matches('Good take|Flagged')")
        notes.append(page.inner_text("#train-note"))
        page.click("#train-keep")
    page.wait_for_selector(f"#train-progress :text('{count} takes')")
    return notes


def test_record_train_restart_and_clone(microphone, tmp_path, request):
    from playwright.sync_api import sync_playwright
    data, port, log = tmp_path / "data", free_port(), tmp_path / "studio.log"
    url = f"http://127.0.0.1:{port}/"
    server = start_server(data, port, log)
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={microphone}"]
    try:
        wait_until_up(url, server, log)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                page.goto(url)
                page.wait_for_selector("#synthesize")
                page.get_by_role("tab", name="Train a voice").click()
                notes = record_takes(page, TAKES)
                assert any(note.startswith("Good take") for note in notes), notes  # heard as speech, not clipped
                peaks = [float(np.abs(sf.read(str(p))[0]).max()) for p in data.rglob("takes/*.wav")]
                assert len(peaks) == TAKES and all(0.25 < p < 0.85 for p in peaks), peaks  # no automatic gain
                page.check("#train-consent input")
                page.get_by_label("10 minutes").check()
                page.click("#train-start")
                page.wait_for_selector("#train-status :text-matches('Preparing|Training')")

                # The studio stops while the job runs; its training process stops with it.
                [job] = json.loads((data / "tuning" / "jobs.json").read_text())
                assert job["state"] == "running" and job["steps"] == 10
                page.goto("about:blank")  # else uvicorn's graceful stop waits for the page's open stream
                stop(server)
                deadline = time.monotonic() + 15
                while alive(job["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert not alive(job["pid"])

                server = start_server(data, port, log)
                wait_until_up(url, server, log)
                page.goto(url)
                page.wait_for_selector("#synthesize")
                page.get_by_role("tab", name="Train a voice").click()
                page.wait_for_selector("#train-status :text('Done')", timeout=JOB_TIMEOUT_MS)
                assert "My voice" in page.inner_text("#train-status")
                page.wait_for_selector("#train-sample audio, #train-sample a[download]", state="attached")
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-trained.png"), full_page=True)

                page.get_by_role("tab", name="Clone").click()
                page.click("#voice-choice input")
                page.click("[role='option']:has-text('My voice')")
                page.locator("#text-input textarea").fill("My own voice, trained in the browser.")
                page.click("#synthesize")
                wait_for_clone(page)
                assert page.locator("#output-audio audio, #output-audio a[download]").count() > 0
            finally:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
                browser.close()
        [job] = json.loads((data / "tuning" / "jobs.json").read_text())
        assert job["state"] == "done" and job["voice"] == "My voice" and job["takes"] == TAKES
    finally:
        stop(server)
