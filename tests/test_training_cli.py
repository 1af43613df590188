"""The training console entries: every option explained, `--help` works."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = {"encoder_preprocess": "sv2tts-encoder-preprocess", "encoder_train": "sv2tts-encoder-train",
            "synthesizer_preprocess": "sv2tts-synthesizer-preprocess", "synthesizer_train": "sv2tts-synthesizer-train",
            "vocoder_preprocess": "sv2tts-vocoder-preprocess", "vocoder_train": "sv2tts-vocoder-train",
            "finetune": "sv2tts-finetune", "fastspeech_train": "sv2tts-starter-train"}
MODULES = [f"deepfake_audio.training.{name}" for name in COMMANDS]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", MODULES)
def test_help_explains_every_option(name):
    parser = importlib.import_module(name).build_parser()
    # argparse re-wraps the text (also at hyphens), so compare with all white space removed
    shown = "".join(parser.format_help().split())
    assert parser.description and "".join(parser.description.split()) in shown
    for action in parser._actions:
        what = action.option_strings or [action.dest]
        # The explanation is printed by --help, next to the option, and says more than the option's name.
        assert action.help, f"{name}: {what} has no help"
        words = " ".join(action.help.replace("%%", "%").split())
        assert "".join(words.split()) in shown, f"{name}: the help of {what} is not printed"
        assert words.strip(".").lower() not in {w.lstrip("-").replace("-", " ") for w in what}, f"{name}: {what}"


def test_console_entries_are_declared():
    text = (ROOT / "pyproject.toml").read_text()
    for module, script in COMMANDS.items():
        assert f'{script} = "deepfake_audio.training.{module}:cli"' in text


def test_help_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "deepfake_audio.training.vocoder_train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--overfit-batch" in done.stdout and "torchrun" in done.stdout


def test_bad_data_folder_is_one_line_error(tmp_path):
    from deepfake_audio.training import encoder_train as train
    assert train.cli([str(tmp_path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
