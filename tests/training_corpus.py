"""A tiny multi-speaker corpus spoken by Debian's speech synthesisers (espeak-ng, flite).

`scripts/setup.sh --dev` installs espeak-ng, flite and sox. Each "speaker" is one
synthetic voice; every utterance is a 16 kHz mono 16-bit WAV with its transcript in a
.txt beside it (the generic layout `root/<speaker>/<utterance>.wav`).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
]

# speaker name -> command line producing a WAV at {out} from {text}
VOICES = {
    "espeak_m3": ["espeak-ng", "-v", "en-us+m3", "-s", "165", "-w", "{out}", "{text}"],
    "espeak_f2": ["espeak-ng", "-v", "en-gb+f2", "-s", "150", "-p", "70", "-w", "{out}", "{text}"],
    "flite_slt": ["flite", "-voice", "slt", "-t", "{text}", "-o", "{out}"],
    "flite_awb": ["flite", "-voice", "awb", "-t", "{text}", "-o", "{out}"],
}


def tools_missing() -> list[str]:
    return [tool for tool in ("espeak-ng", "flite", "sox") if shutil.which(tool) is None]


def make_speech_corpus(root: Path, speakers: int = 4, utterances: int = 4) -> Path:
    """Write `speakers` x `utterances` utterances under `root` (once; later calls reuse them)."""
    done = root / ".complete"
    if done.is_file():
        return root
    for name, command in list(VOICES.items())[:speakers]:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k, text in enumerate(SENTENCES[:utterances]):
            raw = folder / f"raw_{k}.wav"
            out = folder / f"utt{k}.wav"
            subprocess.run([a.format(out=raw, text=text) for a in command], check=True, capture_output=True)
            subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True,
                           capture_output=True)
            raw.unlink()
            (folder / f"utt{k}.txt").write_text(text + "\n", encoding="utf-8")
    done.touch()
    return root
