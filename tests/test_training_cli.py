"""The training console entries: every option explained, `--help` works."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

MODULES = ["encoder.preprocess", "encoder.train", "synthesizer.preprocess", "synthesizer.train",
           "vocoder.preprocess", "vocoder.train", "deepfake_audio.finetune"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", MODULES)
def test_every_option_has_help(name):
    parser = importlib.import_module(name).build_parser()
    assert parser.description
    for action in parser._actions:
        assert action.help and len(action.help) > 10, f"{name}: {action.option_strings or action.dest}"


def test_console_entries_are_declared():
    text = (ROOT / "pyproject.toml").read_text()
    for name, script in [("encoder.preprocess", "sv2tts-encoder-preprocess"), ("encoder.train", "sv2tts-encoder-train"),
                         ("synthesizer.preprocess", "sv2tts-synthesizer-preprocess"),
                         ("synthesizer.train", "sv2tts-synthesizer-train"),
                         ("vocoder.preprocess", "sv2tts-vocoder-preprocess"), ("vocoder.train", "sv2tts-vocoder-train"),
                         ("deepfake_audio.finetune", "sv2tts-finetune")]:
        assert f'{script} = "{name}:cli"' in text


def test_help_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "vocoder.train", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "--overfit-batch" in done.stdout and "torchrun" in done.stdout


def test_bad_data_folder_is_one_line_error(tmp_path):
    from encoder import train
    assert train.cli([str(tmp_path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
