"""The starter recipe (scripts/train_starter.sh) end to end on a tiny corpus with tiny models.

Every step the README documents runs here with the script's own commands, so that a
renamed option or a moved module breaks this test rather than the next real training
session: corpus, preprocess, pack, bank, train, export, pseudo-speakers, the vocoder's
data, the synthesizer's GTA mels for it, its training and export, the voice-pitch model, evaluation and the model card.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_corpus import tools_missing

ROOT = Path(__file__).resolve().parents[1]
TINY_SYNTHESIZER = "d_model=32 heads=2 ffn_dims=64 encoder_layers=1 decoder_layers=1 duration_dims=32 " \
                   "aligner_dims=16 batch_size=4 consistency_bank_items=2"
TINY_VOCODER = "channels=16 blocks=1 batch_size=2 segment_frames=24 warmup_steps=1"


@pytest.mark.skipif(bool(tools_missing()), reason="speech synthesisers missing")
def test_the_starter_recipe_runs_end_to_end_on_a_tiny_corpus(tmp_path):
    starter = tmp_path / "starter"
    env = {**os.environ, "PY": sys.executable, "WORK": str(tmp_path / "work"), "RUN": str(tmp_path / "run"),
           "VOCODER_RUN": str(tmp_path / "vocoder_run"), "STARTER": str(starter), "FRESH": "1",
           "SENTENCES": "6", "PER_SPEAKER": "1", "AUGMENT": "0", "BANK_VOICES": "4", "BANK_OTHER_LANGUAGES": "1", "PSEUDO_SPEAKERS": "3",
           "PSEUDO_PER_SPEAKER": "1", "STEPS": "2", "CONSISTENCY_START": "1", "VOCODER_STEPS": "2",
           "EVAL_LIMIT": "1", "EVAL_ARGS": "--no-transforms", "WORDS_LIMIT": "2", "SYNTH_HPARAMS": TINY_SYNTHESIZER, "VOCODER_HPARAMS": TINY_VOCODER}
    env.pop("SYNTH_PITCH", None)  # the default: the pitch-aware synthesizer, as shipped
    proc = subprocess.run(["bash", "scripts/train_starter.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for name in ("synthesizer.pt", "starter_vocoder.pt", "voice_pitch.pt", "evaluation.json",
                 "evaluation_as_recorded.json", "MODEL_CARD.md"):
        assert (starter / name).is_file(), name
    report = json.loads((starter / "evaluation.json").read_text())
    assert report["vocoder"] == "starter" and set(report["others"]) == {"griffinlim"}
    # the two held-out voices as recorded (the lower and higher versions and the hard candidates are
    # test_evaluate's; here they would only repeat the same commands four times over)
    assert len(report["voices"]) == 2 and report["dnsmos"] is not None
    card = (starter / "MODEL_CARD.md").read_text()
    assert "## Starter vocoder" in card and "pseudo-speakers" in card and "DNSMOS" in card
    assert "as recorded only" in card and "among None" not in card
    assert "teacher forcing" in card  # the vocoder's GTA data is on the card
    words = json.loads((starter / "evaluation_as_recorded.json").read_text())  # evaluate_words: WORDS_LIMIT of them
    assert [v["sentences"] for v in words["voices"]] == [2, 2] and words["dnsmos"] is None
    assert "Word errors over 2 of the " in card and "held-out sentences of the voices as recorded" in card
    times = json.loads((tmp_path / "work" / "recipe_times.json").read_text())
    assert {"corpus", "pseudo", "vocoder_data", "vocoder_gta_mels", "vocoder_gta", "voice_pitch", "evaluate",
            "evaluate_words"} <= set(times)
    # the vocoder learnt from the synthesizer's teacher-forced mels too, one per training utterance
    gta = json.loads((tmp_path / "work" / "vocoder_gta" / "index.json").read_text())
    preprocessed = (tmp_path / "work" / "starter_data" / "metadata.jsonl").read_text().splitlines()
    assert len(gta["files"]) == len(preprocessed)
    vocoder_run = json.loads((tmp_path / "vocoder_run" / "hparams.json").read_text())
    assert vocoder_run["also"] == [str(tmp_path / "work" / "vocoder_gta")]
