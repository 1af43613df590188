"""The example reference voices shipped in examples/voices/ (see scripts/make_example_voices.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "voices"
# What the examples say: not what the clip says, so the clone is plainly new speech.
EXAMPLE_TEXTS = (
    "Hello! This voice was cloned from six seconds of speech.",
    "Could you read the next chapter aloud, please? I will make the tea.",
    "The train to the coast leaves at noon, and we still have to buy the tickets.",
    "Thank you for calling. Please leave a message after the tone.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
)


@dataclass(frozen=True)
class ExampleVoice:
    path: Path  # 16 kHz mono WAV, 5 to 8 s
    label: str  # "US English, male (flite rms)"
    licence: str
    text: str  # a sentence to clone it with


def example_voices(folder: Path = EXAMPLES_DIR) -> list[ExampleVoice]:
    """The example voices listed in `folder`/voices.json whose files are present (none if it is missing)."""
    listing = folder / "voices.json"
    if not listing.is_file():
        return []
    entries = json.loads(listing.read_text(encoding="utf-8"))
    return [ExampleVoice(folder / e["file"], e["voice"], e["licence"], EXAMPLE_TEXTS[k % len(EXAMPLE_TEXTS)])
            for k, e in enumerate(entries) if (folder / e["file"]).is_file()]


def example_reference(reference, folder: Path = EXAMPLES_DIR):
    """`reference` as given, or the example voice it names. A click on an example sets the page's
    audio to the example's file name first (Gradio's display value of an example, `Audio.process_example`)
    and to the file itself a moment later: a clone started in between sends only the name. A
    bare name that is exactly a shipped example's file name (and no file) is that example."""
    if not isinstance(reference, (str, Path)) or not str(reference) or Path(reference).exists():
        return reference
    if Path(reference).name != str(reference):
        return reference  # only a bare file name, never a path
    return next((e.path for e in example_voices(folder) if e.path.name == str(reference)), reference)
