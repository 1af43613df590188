"""Make the example reference voices in examples/voices/ from Debian's free speech synthesisers.

    .venv/bin/python scripts/make_example_voices.py      # needs flite, festival, espeak-ng and sox

Five short clips (5 to 8 s, 16 kHz mono 16-bit), each a different synthetic speaker
from the starter corpus's voices, with the licence of each written to
examples/voices/voices.json and README.md. The studio offers them as examples; the
notebook and the README's quick start clone them. Two of them (rms, awb) are the
corpus's held-out voices: the starter models never heard them.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_audio.training.corpus import HELD_OUT, SAMPLE_RATE, VOICES, synthesize  # noqa: E402

OUT = ROOT / "examples" / "voices"
# file stem -> (corpus speaker, description, what the clip says)
EXAMPLES = {
    "rms-us-male": ("flite_rms", "US English, male (flite rms)",
                    "I keep a small notebook by the window, and every morning I write down what the weather "
                    "is doing."),
    "awb-scottish-male": ("flite_awb", "Scottish English, male (flite awb)",
                          "The ferry leaves at half past nine, so we should pack the bags tonight and sleep "
                          "a little earlier."),
    "slt-us-female": ("flite_slt", "US English, female (flite slt)",
                      "Our garden has three apple trees, and each autumn we bake more pies than we could "
                      "ever eat."),
    "ked-us-male": ("festival_ked", "US English, male (Festival ked diphone)",
                    "Please remember to water the plants on the balcony while I am away for the weekend."),
    "gb-female": ("espeak_gb_f4", "British English, female (eSpeak NG en-gb+f4)",
                  "The library opens at ten on Saturdays, and the children's corner fills up within the "
                  "hour."),
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    voices = {v.speaker: v for v in VOICES}
    listing = []
    for stem, (speaker, description, text) in EXAMPLES.items():
        voice = voices[speaker]
        wav = OUT / f"{stem}.wav"
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            synthesize(voice, text, raw)
            # 16 kHz mono 16-bit, 0.3 s of silence at each end (as a recording would have), -3 dB peak.
            subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(wav),
                            "pad", "0.3", "0.3", "gain", "-n", "-3"], check=True, capture_output=True)
        seconds = float(subprocess.run(["soxi", "-D", str(wav)], check=True, capture_output=True,
                                       text=True).stdout)
        listing.append({"file": wav.name, "voice": description, "text": text, "seconds": round(seconds, 2),
                        "engine": voice.engine, "engine_voice": voice.name, "debian_package": voice.debian_package,
                        "licence": voice.licence, "held_out_from_starter_training": speaker in HELD_OUT})
        print(f"{wav.name}: {seconds:.1f} s")
    (OUT / "voices.json").write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")
    rows = "\n".join(f"| `{e['file']}` | {e['voice']} | {e['seconds']:.1f} s | {e['debian_package']} | "
                     f"{e['licence']} |" for e in listing)
    (OUT / "README.md").write_text(
        "# Example voices\n\n"
        "Short reference clips for trying the studio, the notebook and the CLI. They are not recordings\n"
        "of people: each is made by a free speech synthesiser packaged in Debian, by\n"
        "`scripts/make_example_voices.py`, and may be redistributed under the licence given.\n"
        "`rms` and `awb` are held out of the starter models' training data.\n\n"
        "| file | voice | length | made with | licence |\n|---|---|---|---|---|\n" + rows + "\n\n"
        "What each clip says is in `voices.json`.\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
